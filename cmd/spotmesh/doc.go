// Command spotmesh is the one binary of the spotmesh market: it runs the
// node daemon ('spotmesh run') and, as a CLI, talks to a running daemon
// over its local REST API (node/api), found through the home directory:
// <home>/api holds the daemon's address and <home>/api.token its token.
//
// Verbs are dispatched from one table, verbs() in cli.go; global flags
// (--home, --json, --log-level) go before or after the verb. Exit codes:
// 0 ok, 1 refused or failed, 2 usage, 3 no daemon answers.
package main
