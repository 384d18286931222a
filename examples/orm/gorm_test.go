package orm_test

import (
	"testing"

	"github.com/qorb-go/qorb"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

type Note struct {
	ID     uint
	Body   string
	Author string `gorm:"index"`
}

// TestGORM: GORM's PostgreSQL dialector opens the DSN with the driver it
// is given, qorb, and builds its SQL for PostgreSQL. AutoMigrate,
// Create, First, Where and Updates work through the pool.
func TestGORM(t *testing.T) {
	dsn := schemaDSN(t)
	db, err := gorm.Open(postgres.New(postgres.Config{DriverName: "qorb", DSN: dsn}), // the line README quotes
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })

	if err := db.AutoMigrate(&Note{}); err != nil {
		t.Fatalf("AutoMigrate: %v", err)
	}
	n := Note{Body: "hello", Author: "ann"}
	if err := db.Create(&n).Error; err != nil || n.ID == 0 {
		t.Fatalf("Create = id %d, %v", n.ID, err)
	}
	if err := db.Model(&n).Updates(Note{Body: "hello again"}).Error; err != nil {
		t.Fatalf("Updates: %v", err)
	}
	var got Note
	if err := db.Where("author = ?", "ann").First(&got).Error; err != nil {
		t.Fatalf("First: %v", err)
	}
	if got.ID != n.ID || got.Body != "hello again" {
		t.Errorf("First = %+v, want %d with body %q", got, n.ID, "hello again")
	}
	// Under GORM is qorb's pool, which served those statements.
	c, err := qorb.ConnectorOf(sqlDB)
	if err != nil {
		t.Fatalf("ConnectorOf(GORM's *sql.DB): %v", err)
	}
	var claims uint64
	for _, b := range c.Stats().Backends {
		claims += b.Claims
	}
	if claims < 4 {
		t.Errorf("qorb's pool served %d claims, want at least the 4 statements above", claims)
	}
}
