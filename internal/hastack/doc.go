// Package hastack measures qorb against a real HA stack: a three-node
// PostgreSQL 15 cluster managed by Patroni with etcd (internal/dbtest's
// StartPatroniCluster), side by side with what users deploy instead,
// HAProxy with Patroni's REST health checks in front of the same cluster
// (StartHAProxy) and plain pgx database/sql behind it.
//
// A [Stack] reaches the cluster three ways at once, each a [System]: qorb
// with the nodes listed in its DSN, qorb with the nodes published as SRV
// records by an in-process DNS server, and HAProxy's primary and replica
// ports. Every system runs the same load at the same time (by default 32
// readers with the replica role or port, 8 writers with the primary role
// or port, each operation under its own deadline) while a scenario changes
// the cluster: the primary's PostgreSQL killed with SIGKILL and Patroni
// failing over by itself, a planned switchover through Patroni's REST API,
// or etcd and every Patroni daemon frozen. [Figures] says what each
// application saw: errors, the time from the event to the first write on the
// new primary, reads served by a server in the wrong role, and acknowledged
// writes the new primary does not have.
//
// The tests run the failover and the outage and assert what qorb
// guarantees; with -hastack.compare they print the comparison table of
// README.md:
//
//	go test ./internal/hastack -run TestPatroniCompare -hastack.compare -v
package hastack
