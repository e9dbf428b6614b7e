package processor

import (
	"context"

	"github.com/leadpipe/leadpipe/internal/chengine"
	"github.com/leadpipe/leadpipe/internal/testenv"
	"github.com/leadpipe/leadpipe/store"
)

func migrateEngine(e *chengine.Server) error {
	def, err := e.OpenDefault()
	if err != nil {
		return err
	}
	defer def.Close()
	if err := store.CreateDatabase(context.Background(), def, e.Database()); err != nil {
		return err
	}
	conn, err := e.Open()
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = store.Migrate(context.Background(), conn, testenv.Quiet())
	return err
}
