module github.com/qorb-go/qorb

go 1.25
