package envsync

import "go.yaml.in/yaml/v3"

type yamlNode = yaml.Node

func unmarshalYAML(b []byte, n *yaml.Node) error { return yaml.Unmarshal(b, n) }
