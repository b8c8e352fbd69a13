package main
import (
 _ "github.com/dgraph-io/badger/v4"
 _ "github.com/apache/arrow-go/v18/arrow"
 _ "github.com/parquet-go/parquet-go"
 _ "github.com/gofiber/fiber/v2"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/zeebo/xxh3"
 _ "golang.org/x/sync/errgroup"
 _ "go.uber.org/goleak"
 _ "github.com/hashicorp/golang-lru/v2"
)
import _ "github.com/valyala/fastjson"
import _ "github.com/stretchr/testify/require"
