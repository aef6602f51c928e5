module github.com/forgebus/forgebus/ingest

go 1.26.0

replace (
	github.com/forgebus/forgebus/ingest => ../ingest
	github.com/forgebus/forgebus/schemas => ../schemas
	github.com/forgebus/forgebus/services => ../services
	github.com/forgebus/forgebus/workers => ../workers
)
