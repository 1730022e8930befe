package node

import "github.com/spotmesh/spotmesh/node/api"

// SettleService is the settle service as the API sees it (api.Backend):
// the ledger of receipts and settlements, nil when the node has none.
func (n *Node) SettleService() api.Settlement {
	if s := n.Settle(); s != nil {
		return s
	}
	return nil
}
