package mysqldialect_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	"github.com/qorb-go/qorb"
	_ "github.com/qorb-go/qorb/dialects/mysqldialect" // registers mysql:// and mysql+srv://
)

// Open a pool over the MySQL backends published as SRV records
// _mysql._tcp.db.service.consul, verifying each server's certificate
// against its SRV target name. Reads that can stand a replica's lag ask
// for one.
func Example() {
	db, err := sql.Open("qorb", "mysql+srv://app@db.service.consul/app?tls=true&parseTime=true&target_session_attrs=primary")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close() // stops the resolver and closes every connection

	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "UPDATE jobs SET state = 'done' WHERE id = ?", 42); err != nil {
		log.Fatal(err)
	}
	var pending int
	err = db.QueryRowContext(qorb.WithRole(ctx, qorb.RolePreferReplica),
		"SELECT COUNT(*) FROM jobs WHERE state = 'pending'").Scan(&pending)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pending)
}

// Open a pool over a static list of backends, with driver parameters
// (parseTime, a system variable) and pool parameters side by side.
func Example_staticHosts() {
	db, err := sql.Open("qorb", "mysql://app:secret@10.0.0.1:3306,10.0.0.2:3306/app"+
		"?parseTime=true&time_zone=%27%2B00%3A00%27&pool_max_conns=20")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	var version string
	if err := db.QueryRow("SELECT VERSION()").Scan(&version); err != nil {
		log.Fatal(err)
	}
	fmt.Println(version)
}
