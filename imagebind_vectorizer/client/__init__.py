"""Clients of our own server's gRPC API (the wire contract in proto/, generated in server/proto_gen):
`segments.SegmentClient` streams long files to VectorizeSegments."""
