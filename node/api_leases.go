package node

import (
	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/runtime"
)

// LeaseService is the lease service as the API sees it (api.Backend), nil
// when the node has none.
func (n *Node) LeaseService() api.Leases {
	if s := n.Leases(); s != nil {
		return s
	}
	return nil
}

// Instances lists the runtime's instances (api.Backend); none when the
// node runs no driver.
func (n *Node) Instances() []runtime.Instance {
	if rt := n.Runtime(); rt != nil {
		return rt.Instances()
	}
	return nil
}
