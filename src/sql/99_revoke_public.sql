-- Last part of the install script (src/sql/*.sql are joined in name order): whatever the
-- parts before created, nothing in schema courier is usable by PUBLIC. Access is given per
-- queue with courier.grant() and per function by an administrator's GRANT.

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA courier FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA courier FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA courier FROM PUBLIC;
