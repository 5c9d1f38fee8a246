"""The summary client's HTTPS, in the pieces http.client and urllib3 leave out (their read timeout is per
read, they have no DNS deadline and no TLS session reuse), split the way urllib3 splits `util/timeout`,
`util/connection`, `util/retry` and its pool:

- `budget`: when one connection's I/O must end, and the client's stop token (`Budget`);
- `resolve`: the service's addresses with a deadline, cached, and the TCP connect to the first that answers;
- `tls`: the TLS context with the session cache, and the socket that waits only for what is left of its
  connection's budget;
- `connection`: the standard library's HTTPS connection to those addresses, with `abort()` and `clean()`;
- `pool`: the one kept-warm connection, checked out by one user at a time, and its keeper thread;
- `retry`: the bounded retry loop and `classify`, the one place that maps the libraries' exceptions to a
  verdict.

`mynabox.adapters.summary_client` puts them together.
"""
