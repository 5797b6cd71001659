-- Workers renew their own leases while they live; this finds a worker's jobs without a scan.
CREATE INDEX messages_by_lease_owner ON messages (lease_owner) WHERE lease_owner IS NOT NULL;
