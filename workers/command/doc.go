// Package command runs one operator-configured argv command safely: never
// through a shell, in a given directory, with exactly the environment it is
// given, in a process group of its own that is killed as a whole when the
// timeout expires or the context ends. The last lines of its combined
// output are kept, bounded, for the worker's result.
package command
