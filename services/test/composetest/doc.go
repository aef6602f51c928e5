// Command composetest runs the scaled-out deployment for real: it brings up
// docker-compose.yml under a project name of its own (three NATS nodes
// with R3 streams, two ingest replicas behind the load balancer, every
// worker, docs with two replicas), posts captured Gogs deliveries
// (testdata/gogs, made unique and signed again) through the load balancer
// on 127.0.0.1, and checks after each step that every delivery answered
// 2xx is stored once, that each worker published exactly one terminal
// result per stored event, that the audit worker recorded each event once,
// and that "forgebus audit verify" passes inside a container. The steps:
// a baseline, a scale-up of worker-docs to three while deliveries flow, a
// docker kill of a NATS node, a 30 s network partition of a NATS node, a
// rolling restart of the ingest replicas, and down/up with the volumes
// kept. Each delivery is sent once, as Gogs does; deliveries without a 2xx
// are printed beside the lost count (zero required during the scale-up and
// the rolling restart). It exits non-zero on any loss or duplicate, and
// removes the containers, networks and volumes of its project.
//
// The images must exist (make images). Run it with make test-compose.
package main
