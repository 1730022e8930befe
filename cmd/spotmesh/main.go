package main

import (
	"context"
	"os"
	"time"
)

func main() {
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now}
	os.Exit(c.main(context.Background(), os.Args[1:]))
}
