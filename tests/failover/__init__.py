"""The failover suite (issue 19): model groups switching upstream routes, with the tests'
scriptable upstream playing each route."""
