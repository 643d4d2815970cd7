//! FTP (RFC 959): a server with separate control and data connections, and a client that traces both.
