// Command quickstart opens a qorb pool over the local PostgreSQL server and
// runs a few queries through database/sql: the README's quick start.
//
//	go run ./examples/quickstart [DSN]
package main

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"time"

	_ "github.com/qorb-go/qorb/dialects/pgdialect" // registers postgres:// and postgres+srv://
)

func main() {
	dsn := "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&pool_max_conns=8"
	if len(os.Args) > 1 {
		dsn = os.Args[1]
	}
	db, err := sql.Open("qorb", dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var version string
	if err := db.QueryRowContext(ctx, "SELECT version()").Scan(&version); err != nil {
		log.Fatal(err)
	}
	fmt.Println(version)

	stmt, err := db.PrepareContext(ctx, "SELECT $1::int * 2")
	if err != nil {
		log.Fatal(err)
	}
	defer stmt.Close()
	for i := range 3 {
		var n int
		if err := stmt.QueryRowContext(ctx, i).Scan(&n); err != nil {
			log.Fatal(err)
		}
		fmt.Println(i, "* 2 =", n)
	}
}
