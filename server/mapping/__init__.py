"""Translation between the protobuf contracts and the domain, both ways."""
