module ledger/clients/go

go 1.25.0

// gRPC and its dependencies at the versions grpcurl (devstack/go_tools.py) is built with, so that
// the test suite compiles them once for both.
require (
	google.golang.org/grpc v1.83.2
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/net v0.58.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
	golang.org/x/text v0.41.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260825221802-da73d73af1c5 // indirect
)
