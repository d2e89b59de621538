"""DNS: what a reseller's records must say, and checking that they do."""
