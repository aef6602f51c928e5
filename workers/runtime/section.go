package runtime

import (
	"bytes"
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// ErrSection is returned (wrapped) by [DecodeSectionKey] for a worker section
// that is not a mapping or a key whose value does not decode.
var ErrSection = errors.New("bad worker section")

// DecodeSectionKey decodes the value of key in a worker's section of the
// config file (workers.<name>) into v, strictly: a field v does not have is
// an error. An absent key leaves v as it is. Each worker decodes its own
// keys this way; the runtime's (runtime:, policy:) are [DecodeConfig]'s.
func DecodeSectionKey(node *yaml.Node, key string, v any) error {
	if node == nil || node.Kind == 0 {
		return nil
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	if node.Kind != yaml.MappingNode {
		if node.Tag == "!!null" {
			return nil
		}
		return fmt.Errorf("%w: line %d is not a mapping", ErrSection, node.Line)
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value != key {
			continue
		}
		raw, err := yaml.Marshal(node.Content[i+1])
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrSection, key, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrSection, key, err)
		}
	}
	return nil
}
