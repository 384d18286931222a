package mysqldialect_test

import (
	"database/sql"
	"fmt"
	"log"

	"github.com/qorb-go/qorb/dialects/mysqldialect"
)

// An existing go-sql-driver/mysql DSN keeps working, and may list several
// backends inside tcp(...); the pool parameters added to it never reach the
// driver.
func ExampleNewConnector() {
	c, err := mysqldialect.NewConnector("app:secret@tcp(10.0.0.1:3306,10.0.0.2:3306)/app" +
		"?parseTime=true&pool_max_conns=20&target_session_attrs=read-write")
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close() // closes the connector too

	var version string
	if err := db.QueryRow("SELECT VERSION()").Scan(&version); err != nil {
		log.Fatal(err)
	}
	fmt.Println(version)
}
