"""Config shared by many nodes through etcd (docs/cluster.md)."""
