package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spotmesh/spotmesh/node/api"
)

// group is a verb with sub-verbs, such as 'offer': a new one is a table
// entry here and a line in verbs().
type group struct {
	name    string
	verbs   func() []verb
	aliases map[string]string
	flags   map[string]func() *flags // the flags of the sub-verbs that have any, for help
	footer  string                   // printed after the sub-verbs in 'help NAME'
}

var offerGroup = group{
	name: "offer", verbs: offerVerbs,
	aliases: map[string]string{"list": "ls", "withdraw": "rm", "remove": "rm"},
	flags:   map[string]func() *flags{"add": helpFlags(offerAddFlags)},
	footer:  "Run 'spotmesh help offer add' for its flags.\n",
}

var applianceGroup = group{
	name: "appliance", verbs: applianceVerbs,
	aliases: map[string]string{"list": "ls", "remove": "rm", "import": "add", "fetch": "get"},
	flags:   map[string]func() *flags{"add": helpFlags(applianceAddFlags), "get": helpFlags(applianceGetFlags)},
	footer: "Run 'spotmesh help appliance add' (or get) for its flags.\n" +
		"A progress bar shows on stderr when it is a terminal (--progress forces it); otherwise one line at the end.\n",
}

// groups are the verbs with sub-verbs, for help.
func groups() []group {
	return []group{offerGroup, applianceGroup, leaseGroup, instancesGroup, denyGroup, receiptsGroup, settleGroup, testnetGroup}
}

// want lists the sub-verbs for an error: "add, ls or rm".
func (g group) want() string {
	var names []string
	for _, v := range g.verbs() {
		names = append(names, v.name)
	}
	last := len(names) - 1
	if last == 0 {
		return names[0]
	}
	return strings.Join(names[:last], ", ") + " or " + names[last]
}

// lookup finds a sub-verb by its name or alias.
func (g group) lookup(name string) (verb, bool) {
	if a, ok := g.aliases[name]; ok {
		name = a
	}
	return lookupVerb(g.verbs(), name)
}

// run dispatches 'NAME SUB [args]'.
func (g group) run(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		return usagef("want a sub-verb: %s; run 'spotmesh help %s'", g.want(), g.name)
	}
	switch args[0] {
	case "-h", "--help", "-help":
		return errHelp
	}
	v, ok := g.lookup(args[0])
	if !ok {
		return usagef("unknown sub-verb %q: want %s", args[0], g.want())
	}
	if err := v.run(ctx, c, args[1:]); err != nil {
		if err == errHelp {
			c.subHelp(g, v.name)
			return nil
		}
		return subError{v.name, err}
	}
	return nil
}

// helpFlags makes the constructor of a verb's flag set, for help only,
// from the one its command parses with.
func helpFlags[T any](mk func() (*flags, T)) func() *flags {
	return func() *flags { f, _ := mk(); return f }
}

// subHelp prints the help of 'NAME SUB'.
func (c *cli) subHelp(g group, sub string) int {
	v, ok := g.lookup(sub)
	if !ok {
		return c.fail("help "+g.name, usagef("unknown sub-verb %q: want %s", sub, g.want()))
	}
	fmt.Fprintf(c.stdout, "usage: spotmesh %s %s %s\n\n%s\n", g.name, v.name, v.args, v.summary)
	if mk := g.flags[v.name]; mk != nil {
		fmt.Fprint(c.stdout, "\nflags:\n")
		mk().printDefaults(c.stdout)
	}
	fmt.Fprint(c.stdout, "\n"+globalHelp)
	return exitOK
}

// printSubVerbs lists a group's sub-verbs, for 'help NAME'.
func (c *cli) printSubVerbs(g group) {
	for _, s := range g.verbs() {
		fmt.Fprintf(c.stdout, "  spotmesh %s %s %s\n      %s\n", g.name, s.name, s.args, s.summary)
	}
	fmt.Fprint(c.stdout, "\n"+g.footer)
}

// call makes one request of the daemon of c.home and puts its error in
// words for people.
func call[T any](c *cli, do func(*api.Client) (T, error)) (T, error) {
	cl, addr, err := c.client()
	if err != nil {
		var zero T
		return zero, err
	}
	defer cl.CloseIdleConnections()
	v, err := do(cl)
	return v, c.apiError(addr, err)
}

// parseNoArgs parses the flags of a verb that takes no arguments.
func parseNoArgs(f *flags, args []string) error {
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	return noArgs(pos)
}
