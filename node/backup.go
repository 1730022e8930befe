package node

import "io"

// Backup implements api.Backend: it writes a consistent copy of the
// node's database to w while the node runs (store.DB.Backup, badger's
// backup format). store.Restore makes a database from it; 'spotmesh
// backup' and 'spotmesh restore' wrap it with the home's config and key.
func (n *Node) Backup(w io.Writer) error {
	return n.db.Backup(w)
}
