package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spotmesh/spotmesh/protocol"
)

// flags is a verb's flag set. Values are parsed as they are set; a bad
// one fails with `--name "value": want <form>`, which the verb prefixes
// with its name.
type flags struct {
	verb string
	fs   *flag.FlagSet
	bad  error // the first bad value, in our words
	set  map[string]bool
}

func newFlags(verb string) *flags {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &flags{verb: verb, fs: fs}
}

// checked records a value's error in our form before the flag package
// wraps it in its own.
type checked struct {
	name string
	v    flag.Value
	f    *flags
}

func (c checked) String() string {
	if c.v == nil {
		return ""
	}
	return c.v.String()
}

func (c checked) Set(s string) error {
	if err := c.v.Set(s); err != nil {
		if c.f.bad == nil {
			c.f.bad = fmt.Errorf("--%s %q: %v", c.name, s, err)
		}
		return err
	}
	return nil
}

func (c checked) IsBoolFlag() bool {
	b, ok := c.v.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func (f *flags) add(v flag.Value, name, usage string) {
	f.fs.Var(checked{name: name, v: v, f: f}, name, usage)
}

// parse reads flags and positional arguments in any order and returns the
// positional ones. A bad flag is a usage error.
func (f *flags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			if f.bad != nil {
				return nil, usageError{f.bad}
			}
			return nil, usageError{fmt.Errorf("%v: see 'spotmesh help %s'", strings.Replace(err.Error(), " -", " --", 1), f.verb)}
		}
		args = f.fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	f.set = map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	return pos, nil
}

// isSet reports whether the flag was given.
func (f *flags) isSet(name string) bool { return f.set[name] }

// require fails with a usage error naming the first missing flag.
func (f *flags) require(names ...string) error {
	for _, n := range names {
		if !f.isSet(n) {
			fl := f.fs.Lookup(n)
			return usagef("--%s is required: %s", n, fl.Usage)
		}
	}
	return nil
}

func (f *flags) str(name, def, usage string) *string { return f.fs.String(name, def, usage) }
func (f *flags) boolean(name string, def bool, usage string) *bool {
	return f.fs.Bool(name, def, usage)
}

// funcValue is a flag.Value from a parse function.
type funcValue struct {
	set    func(string) error
	str    func() string
	isBool bool
}

func (v funcValue) String() string {
	if v.str == nil {
		return ""
	}
	return v.str()
}
func (v funcValue) Set(s string) error { return v.set(s) }
func (v funcValue) IsBoolFlag() bool   { return v.isBool }

func (f *flags) size(name, usage string) *uint64 {
	p := new(uint64)
	f.add(funcValue{set: func(s string) error {
		if strings.Trim(s, "0123456789. ") == "" {
			return errors.New("give a unit: want a size like 8GiB, 512MiB or 1TB")
		}
		n, err := protocol.ParseSize(s)
		if err != nil {
			return errors.New("want a size like 8GiB, 512MiB or 1TB")
		}
		*p = n
		return nil
	}}, name, usage)
	return p
}

func (f *flags) price(name, usage string) *protocol.Price {
	p := new(protocol.Price)
	f.add(funcValue{set: func(s string) error {
		v, err := parsePrice(s, "0.04USD/h")
		if err != nil {
			return err
		}
		*p = v
		return nil
	}}, name, usage)
	return p
}

func (f *flags) duration(name string, def time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	*p = def
	f.add(funcValue{set: func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return errors.New("want a Go duration like 72h, 90m or 30s")
		}
		*p = d
		return nil
	}}, name, usage)
	return p
}

func (f *flags) uint32(name string, def uint32, usage string) *uint32 {
	p := new(uint32)
	*p = def
	f.add(funcValue{set: func(s string) (err error) {
		*p, err = parseUint32(s)
		return err
	}}, name, usage)
	return p
}

func parseUint32(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, errors.New("want a whole number like 10")
	}
	return uint32(n), nil
}

func parsePositive(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, errors.New("want a whole number of 1 or more, like 20")
	}
	return n, nil
}

// list is a repeatable flag: --listen A --listen B.
func (f *flags) list(name, usage string) *[]string {
	p := new([]string)
	f.add(funcValue{set: func(s string) error {
		if strings.TrimSpace(s) == "" {
			return errors.New("empty")
		}
		*p = append(*p, s)
		return nil
	}}, name, usage)
	return p
}

// csv is a comma-separated flag: --formats bundle,qcow2.
func (f *flags) csv(name, usage string) *[]string {
	p := new([]string)
	f.add(funcValue{set: func(s string) error {
		var out []string
		for _, x := range strings.Split(s, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
		if len(out) == 0 {
			return errors.New("want a comma-separated list like bundle,qcow2")
		}
		*p = out
		return nil
	}}, name, usage)
	return p
}

// printDefaults writes the flags' help, with the double dashes people
// type.
func (f *flags) printDefaults(w io.Writer) {
	f.fs.VisitAll(func(fl *flag.Flag) {
		name, usage := flag.UnquoteUsage(fl)
		name = strings.ToUpper(name)
		line := "  --" + fl.Name
		if len(fl.Name) == 1 {
			line = "  -" + fl.Name
		}
		if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n      %s", line, usage)
		if fl.DefValue != "" && fl.DefValue != "0" && fl.DefValue != "false" && fl.DefValue != "0s" {
			fmt.Fprintf(w, " (default %s)", fl.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// parsePrice reads a price as protocol.ParsePrice does, but wants the
// currency code in capitals as written: "4cents" would otherwise be four
// of a currency named CENTS.
func parsePrice(s, example string) (protocol.Price, error) {
	p, err := protocol.ParsePrice(s)
	if err != nil {
		return p, fmt.Errorf("want an amount and unit like %s", example)
	}
	if !strings.Contains(s, p.Currency) {
		return p, fmt.Errorf("want an amount and unit like %s, the currency code in capitals", example)
	}
	return p, nil
}
