package runtime

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestDebugPhases(t *testing.T) {
	_, _, js := broker(t)
	ctx := context.Background()
	kv, _ := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "dbg", TTL: time.Hour})
	var g, p, pub atomic.Int64
	var wg sync.WaitGroup
	n := 5000
	ch := make(chan int)
	t0 := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				k := IdempotencyKey(time.Now().String() + string(rune(i)))
				a := time.Now()
				kv.Get(ctx, k)
				b := time.Now()
				kv.Put(ctx, k, []byte(`{"outcome":"succeeded"}`))
				c := time.Now()
				js.Publish(ctx, "forgebus.results.x.y.z", []byte(`{"outcome":"succeeded"}`))
				d := time.Now()
				g.Add(int64(b.Sub(a)))
				p.Add(int64(c.Sub(b)))
				pub.Add(int64(d.Sub(c)))
			}
		}()
	}
	for i := range n {
		ch <- i
	}
	close(ch)
	wg.Wait()
	el := time.Since(t0)
	t.Logf("%.0f/s get %s put %s pub %s", float64(n)/el.Seconds(), time.Duration(g.Load()/int64(n)), time.Duration(p.Load()/int64(n)), time.Duration(pub.Load()/int64(n)))
}
