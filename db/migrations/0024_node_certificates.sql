-- The certificate authority a Kubernetes control-plane node's agent reports once its API server
-- is up (PEM, checked and made canonical before it is stored): kubeconfigs trust it.
ALTER TABLE node_assignments ADD COLUMN ca_certificate TEXT;
