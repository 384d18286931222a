// Package qorb is a client-side connection pool for a database service
// that runs as several backends, delivered as a database/sql driver.
//
// It finds the backends through DNS SRV records or a static list, keeps a
// set of live connections per backend, health-checks them, cleans them
// when they come back, spreads load over the backends, and rides through a
// backend dying. Open it with a DSN after importing a dialect:
//
//	import _ "github.com/qorb-go/qorb/dialects/pgdialect"
//
//	db, err := sql.Open("qorb", "postgres+srv://app@db.service.consul/app")
//
// or build a [Connector] and give it to [sql.OpenDB]. The DSN forms:
//
//	postgres+srv://user:pass@NAME/db?params   SRV _postgresql._tcp.NAME (or NAME if it starts with "_")
//	mysql+srv://user:pass@NAME/db?params      SRV _mysql._tcp.NAME
//	postgres://user@h1:5432,h2:5433/db?params a static list (likewise mysql://)
//
// Parameters starting with pool_ set the pool's policy, dns_server names
// the name server to ask and target_session_attrs the default role; qorb
// takes them out and passes every other parameter to the database driver.
//
// Each operation may choose the backends it runs on with [WithRole]:
// writes to the primary, reads to the replicas. qorb learns each server's
// role from the server itself, keeps replicas that lag too far behind out
// of reads (pool_max_lag), and can steer a read to a backend that has
// replayed a write ([WriteToken], [WithWriteToken]).
//
// The pool itself, generic over the connection type, is package pool;
// backends come from package resolver (resolver/srv looks them up in DNS
// SRV records); package statshttp serves a connector's stats as JSON and
// as a page.
package qorb

import (
	"database/sql"
	"database/sql/driver"
	"errors"
)

// Driver is the database/sql driver registered as "qorb". It opens a
// [Connector] per DSN; database/sql calls it through [sql.Open]. Each
// Connector has a Driver of its own, which [sql.DB.Driver] returns and
// [ConnectorOf] uses to find the Connector.
type Driver struct {
	c *Connector // the Connector it belongs to; nil for the registered one
}

var qorbDriver = &Driver{}

func init() { sql.Register("qorb", qorbDriver) }

var _ driver.DriverContext = (*Driver)(nil)

// Open fails: a qorb connection belongs to a pool, which only a Connector
// has. database/sql never calls it, because Driver implements
// [driver.DriverContext].
func (*Driver) Open(string) (driver.Conn, error) {
	return nil, errors.New("qorb: Driver.Open is not supported; use sql.Open or OpenConnector")
}

// OpenConnector parses dsn and starts a [Connector] for it, as
// [OpenConnector] does.
func (*Driver) OpenConnector(dsn string) (driver.Connector, error) {
	return OpenConnector(dsn)
}
