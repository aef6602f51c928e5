package runtime

import (
	"github.com/ThreeDotsLabs/watermill"
	"github.com/rs/zerolog"
)

// WatermillLogger adapts a zerolog logger to [watermill.LoggerAdapter], so
// the router logs like the rest of forgebus. Watermill's field names are
// kept; its trace level maps to zerolog's.
type WatermillLogger struct {
	log zerolog.Logger
}

var _ watermill.LoggerAdapter = WatermillLogger{}

// NewWatermillLogger returns a [WatermillLogger] writing to log.
func NewWatermillLogger(log zerolog.Logger) WatermillLogger { return WatermillLogger{log: log} }

// Error logs msg at error level with err.
func (l WatermillLogger) Error(msg string, err error, fields watermill.LogFields) {
	l.log.Error().Err(err).Fields(map[string]any(fields)).Msg(msg)
}

// Info logs msg at info level.
func (l WatermillLogger) Info(msg string, fields watermill.LogFields) {
	l.log.Info().Fields(map[string]any(fields)).Msg(msg)
}

// Debug logs msg at debug level.
func (l WatermillLogger) Debug(msg string, fields watermill.LogFields) {
	l.log.Debug().Fields(map[string]any(fields)).Msg(msg)
}

// Trace logs msg at trace level.
func (l WatermillLogger) Trace(msg string, fields watermill.LogFields) {
	l.log.Trace().Fields(map[string]any(fields)).Msg(msg)
}

// With returns a logger that adds fields to every line.
func (l WatermillLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return WatermillLogger{log: l.log.With().Fields(map[string]any(fields)).Logger()}
}
