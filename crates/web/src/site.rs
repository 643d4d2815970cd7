//! The router shared by the HTTP/1 and HTTP/2 drivers: virtual-host selection, routes to the
//! built-in apps and static files (conditional requests, ranges, precompressed variants, listings,
//! redirects, cache policy), uploads and deletes, error pages, counters and the access log.

use crate::apps::{self, Carts};
use crate::body::{self, Body, BodyError, RequestBody, Segment};
use crate::config::WebConfig;
use crate::files::conditional::{self, Outcome, Preconditions, Validators};
use crate::files::encoding::{self, Coding};
use crate::files::path::{self, CleanPath, PathError};
use crate::files::range::{self, RangeRequest};
use crate::files::store::{self, FileCache, FileInfo, Lookup, ResolveCache};
use crate::files::{listing, mime, policy};
use crate::stats::{AccessLog, LogRecord, Stats};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// What the handler knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub secure: bool,
}

/// Paths an HTML response links that an HTTP/2 driver may push (a response extension).
#[derive(Debug, Clone)]
pub struct PushList(pub Vec<String>);

/// The file a whole-file 200 response serves from memory, as it was when served (a response
/// extension): the HTTP/1 fast path may send the same response again while the file's size and
/// mtime stay the same ([`crate::http1_cache`]).
#[derive(Debug, Clone)]
pub struct ServedFile {
    /// The resolved path.
    pub path: PathBuf,
    /// Its size.
    pub len: u64,
    /// Its modification time.
    pub mtime: SystemTime,
}

/// The file bytes a 200 or 206 response's body is made of (a response extension): `len` bytes
/// of `path` from `offset`, the file being `file_len` bytes with `mtime` when the head was made.
/// The HTTP/1.1 fast path sends them with `sendfile(2)` on plain TCP instead of the body
/// ([`crate::http1_send`]).
#[derive(Debug, Clone)]
pub struct FileBody {
    /// The resolved path.
    pub path: PathBuf,
    /// Where the body starts in the file.
    pub offset: u64,
    /// The body's length.
    pub len: u64,
    /// The file's size.
    pub file_len: u64,
    /// Its modification time.
    pub mtime: SystemTime,
}

/// Marks responses after which an HTTP/1 connection must close (a response extension).
#[derive(Debug, Clone, Copy)]
pub struct CloseAfter;

/// The router over virtual hosts and routes (apps, files, uploads), with its caches and counters.
pub struct Router {
    config: WebConfig,
    default_root: PathBuf,
    vhosts: HashMap<String, PathBuf>,
    cache: FileCache,
    resolve: ResolveCache,
    carts: Carts,
    stats: Stats,
    log: Option<AccessLog>,
    allow: HeaderValue,
    /// `Alt-Svc` for HTTP/1.1 and HTTP/2 responses when HTTP/3 is served too.
    alt_svc: Option<HeaderValue>,
}

/// The server's name in the Server header.
pub const SERVER: &str = "appnet";

fn canonical_dir(dir: &Path) -> io::Result<PathBuf> {
    let c = std::fs::canonicalize(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("site directory {}: {e}", dir.display())))?;
    if !c.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", dir.display()),
        ));
    }
    Ok(c)
}

impl Router {
    /// Builds the handler; every site directory must exist.
    pub fn new(config: WebConfig, stats: Stats) -> io::Result<Router> {
        let default_root = canonical_dir(&config.root)?;
        let mut vhosts = HashMap::new();
        for (name, dir) in &config.vhosts {
            vhosts.insert(name.trim().to_ascii_lowercase(), canonical_dir(dir)?);
        }
        let allow = HeaderValue::from_static(if config.allow_write {
            "GET, HEAD, OPTIONS, PUT, DELETE"
        } else {
            "GET, HEAD, OPTIONS"
        });
        Ok(Router {
            cache: FileCache::new(config.cache_file_max, config.cache_total),
            resolve: ResolveCache::new(std::time::Duration::from_secs(1), 10_000),
            log: config.access_log.then(AccessLog::to_stdout),
            carts: Carts::new(apps::CartLimits {
                max_sessions: config.cart_max_sessions,
                new_per_sec: config.cart_new_per_sec,
                new_burst: config.cart_new_burst,
            }),
            default_root,
            vhosts,
            stats,
            allow,
            alt_svc: None,
            config,
        })
    }

    /// Advertises HTTP/3 on UDP `port` in every HTTP/1.1 and HTTP/2 response (RFC 7838).
    pub fn advertise_h3(&mut self, port: u16) {
        self.alt_svc = Some(crate::h3::server::alt_svc(port));
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &WebConfig {
        &self.config
    }

    /// Answers one request (counted and logged).
    pub async fn handle(&self, req: Request<RequestBody>, conn: &ConnInfo) -> Response<Body> {
        let started = SystemTime::now();
        let log_parts = self.log.as_ref().map(|_| {
            let h = req.headers();
            let text = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
            (
                format!("{} {} {:?}", req.method(), target, req.version()),
                text(header::REFERER),
                text(header::USER_AGENT),
            )
        });
        let head = req.method() == Method::HEAD;
        let alt_svc = self.alt_svc.as_ref().filter(|_| req.version() != Version::HTTP_3);
        let mut resp = self.route(req, conn).await;
        finish_headers(&mut resp);
        if let Some(v) = alt_svc {
            resp.headers_mut().insert(header::ALT_SVC, v.clone());
        }
        let status = resp.status().as_u16();
        self.stats.count(status);
        if let (Some(log), Some((line, referer, ua))) = (&self.log, log_parts) {
            let bytes = if head || status == 304 {
                None
            } else {
                resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok())
            };
            log.write(crate::stats::combined(&LogRecord {
                peer: conn.peer,
                time: started,
                request_line: &line,
                status,
                bytes,
                referer: referer.as_deref(),
                user_agent: ua.as_deref(),
            }));
        }
        resp
    }

    /// The response for a request the HTTP/1 guard refused (counted and logged; closes).
    pub fn rejected(&self, status: u16, why: &str, conn: &ConnInfo) -> Response<Body> {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = error_page(status, why, false);
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp.extensions_mut().insert(CloseAfter);
        finish_headers(&mut resp);
        self.stats.count(status.as_u16());
        tracing::info!(peer = %conn.peer, status = status.as_u16(), "refused request: {why}");
        if let Some(log) = &self.log {
            log.write(crate::stats::combined(&LogRecord {
                peer: conn.peer,
                time: SystemTime::now(),
                request_line: "-",
                status: status.as_u16(),
                bytes: None,
                referer: None,
                user_agent: None,
            }));
        }
        resp
    }

    fn site_for(&self, req: &Request<RequestBody>) -> &Path {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.host().to_string())
            .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(host_only));
        authority
            .and_then(|h| self.vhosts.get(&h.trim_end_matches('.').to_ascii_lowercase()))
            .map_or(self.default_root.as_path(), PathBuf::as_path)
    }

    async fn route(&self, req: Request<RequestBody>, conn: &ConnInfo) -> Response<Body> {
        let head = req.method() == Method::HEAD;
        if req.uri().path() == "*" || req.uri() == "*" {
            return if req.method() == Method::OPTIONS {
                self.options()
            } else {
                error_page(StatusCode::BAD_REQUEST, "* is only for OPTIONS", head)
            };
        }
        let raw_path = req.uri().path().to_string();
        if self.config.metrics_path.as_deref() == Some(raw_path.as_str())
            && matches!(*req.method(), Method::GET | Method::HEAD)
        {
            let text = self.stats.registry.render();
            let mut r = bytes_response(StatusCode::OK, "text/plain; version=0.0.4", text.into(), head);
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
        if self.config.apps {
            let under = |mount: &String| {
                let mount = mount.trim_end_matches('/');
                raw_path == mount || raw_path.strip_prefix(mount).is_some_and(|rest| rest.starts_with('/'))
            };
            if self.config.echo_paths.iter().any(under) {
                return self.echo(req).await;
            }
            if raw_path == "/cart" || raw_path == "/cart/" {
                return self.cart(req, conn).await;
            }
        }
        let clean = match path::clean(&raw_path) {
            Ok(p) => p,
            Err(PathError::TooLong) => return error_page(StatusCode::URI_TOO_LONG, "path too long", head),
            Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.to_string(), head),
        };
        if let Some((status, to)) = policy::redirect_for(&self.config.redirects, &clean.url()) {
            return redirect(StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY), to, head);
        }
        if clean.has_hidden_segment() {
            return error_page(StatusCode::NOT_FOUND, "not found", head);
        }
        let root = self.site_for(&req).to_path_buf();
        match *req.method() {
            Method::GET | Method::HEAD => self.get(&req, &root, &clean),
            Method::OPTIONS => self.options(),
            Method::PUT if self.config.allow_write => self.put(req, &root, &clean).await,
            Method::DELETE if self.config.allow_write => self.delete(&req, &root, &clean),
            Method::POST | Method::PUT | Method::DELETE | Method::PATCH | Method::TRACE | Method::CONNECT => {
                let mut r = error_page(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here", false);
                r.headers_mut().insert(header::ALLOW, self.allow.clone());
                r
            }
            _ => error_page(StatusCode::NOT_IMPLEMENTED, "method not implemented", head),
        }
    }

    fn options(&self) -> Response<Body> {
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(header::ALLOW, self.allow.clone());
        r
    }

    fn get(&self, req: &Request<RequestBody>, root: &Path, clean: &CleanPath) -> Response<Body> {
        let head = req.method() == Method::HEAD;
        match self.resolve.lookup(root, &clean.relative(), Instant::now()) {
            Lookup::NotFound => error_page(StatusCode::NOT_FOUND, "not found", head),
            Lookup::Forbidden => error_page(StatusCode::FORBIDDEN, "forbidden", head),
            Lookup::File(info) => {
                if clean.trailing_slash {
                    return error_page(StatusCode::NOT_FOUND, "not found", head);
                }
                self.file(req, root, &clean.url(), info)
            }
            Lookup::Dir(dir) => {
                if !clean.trailing_slash && !clean.segments.is_empty() {
                    let mut to = format!("{}/", clean.url());
                    if let Some(q) = req.uri().query() {
                        to.push('?');
                        to.push_str(q);
                    }
                    return redirect(StatusCode::MOVED_PERMANENTLY, &to, head);
                }
                for index in &self.config.index {
                    if let Ok(rel) = dir.join(index).strip_prefix(root)
                        && let Lookup::File(info) = self.resolve.lookup(root, rel, Instant::now())
                    {
                        return self.file(req, root, &format!("{}{index}", clean.url()), info);
                    }
                }
                if !self.config.listing {
                    return error_page(StatusCode::FORBIDDEN, "directory listing is off", head);
                }
                match store::list_dir(&dir, 10_000) {
                    Ok(mut entries) => {
                        let html = listing::render(&clean.url(), &mut entries);
                        let mut r =
                            bytes_response(StatusCode::OK, "text/html; charset=utf-8", html.into(), head);
                        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                        r
                    }
                    Err(_) => error_page(StatusCode::FORBIDDEN, "directory not readable", head),
                }
            }
        }
    }

    /// Serves a regular file: variants, validators, preconditions, ranges, policy headers.
    fn file(&self, req: &Request<RequestBody>, root: &Path, url: &str, info: FileInfo) -> Response<Body> {
        let head = req.method() == Method::HEAD;
        let h = req.headers();
        let content_type = mime::content_type(&info.path);
        // Precompressed siblings: pick the best one the client accepts.
        let siblings: Vec<(Coding, FileInfo)> = [Coding::Br, Coding::Gzip]
            .into_iter()
            .filter_map(|c| {
                self.resolve.sibling(root, &info.path, c.suffix(), Instant::now()).map(|f| (c, f))
            })
            .collect();
        let (coding, info) = if siblings.is_empty() {
            (None, info)
        } else {
            let accepted = encoding::acceptable(hstr(h, header::ACCEPT_ENCODING));
            match accepted.iter().find_map(|a| siblings.iter().find(|(c, _)| c == a)) {
                Some((c, f)) => (Some(*c), f.clone()),
                None => (None, info),
            }
        };
        let validators = Validators::for_file(info.len, info.mtime, coding.map_or("", |c| c.token()));
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&validators.etag) {
            headers.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&validators.last_modified_header()) {
            headers.insert(header::LAST_MODIFIED, v);
        }
        if !siblings.is_empty() {
            headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        if let Some((cc, expires)) = policy::cache_headers(&self.config.cache, url, SystemTime::now()) {
            if let Ok(v) = HeaderValue::from_str(&cc) {
                headers.insert(header::CACHE_CONTROL, v);
            }
            if let Some(v) = expires.and_then(|e| HeaderValue::from_str(&e).ok()) {
                headers.insert(header::EXPIRES, v);
            }
        }
        let pre = Preconditions {
            if_match: hstr(h, header::IF_MATCH),
            if_none_match: hstr(h, header::IF_NONE_MATCH),
            if_modified_since: hstr(h, header::IF_MODIFIED_SINCE),
            if_unmodified_since: hstr(h, header::IF_UNMODIFIED_SINCE),
        };
        match conditional::evaluate(&pre, &validators, true) {
            Outcome::Proceed => {}
            Outcome::NotModified => {
                let mut r = Response::new(body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                *r.headers_mut() = headers;
                return r;
            }
            Outcome::PreconditionFailed => {
                return error_page(StatusCode::PRECONDITION_FAILED, "precondition failed", head);
            }
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(c) = coding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c.token()));
        }
        let total = info.len;
        let ranges = match hstr(h, header::RANGE) {
            Some(r) if req.method() == Method::GET => {
                let honour =
                    hstr(h, header::IF_RANGE).is_none_or(|ir| conditional::if_range_allows(ir, &validators));
                if honour { range::parse(r, total) } else { RangeRequest::Full }
            }
            _ => RangeRequest::Full,
        };
        // A file that changed size between the stat and the read is streamed instead (and the
        // stream ends early with an error rather than a body of the wrong length).
        let cached = if self.cache.holds(total) {
            self.cache.get(&info).ok().filter(|d| d.len() as u64 == total)
        } else {
            None
        };
        let (status, segments, len) = match ranges {
            RangeRequest::Unsatisfiable => {
                let mut r = error_page(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable", head);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
            RangeRequest::Full => (StatusCode::OK, vec![Segment::File { offset: 0, len: total }], total),
            RangeRequest::Partial(rs) if rs.len() == 1 => {
                let r = rs[0];
                if let Ok(v) = HeaderValue::from_str(&r.content_range(total)) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
                (StatusCode::PARTIAL_CONTENT, vec![Segment::File { offset: r.start, len: r.len() }], r.len())
            }
            RangeRequest::Partial(rs) => {
                let boundary = format!("appnet{:016x}", rand::random::<u64>());
                let mp = range::Multipart::new(boundary, content_type, &rs, total);
                if let Ok(v) = HeaderValue::from_str(&mp.content_type()) {
                    headers.insert(header::CONTENT_TYPE, v);
                }
                let mut segs = Vec::new();
                for (part_head, r) in &mp.parts {
                    segs.push(Segment::Bytes(Bytes::from(part_head.clone())));
                    segs.push(Segment::File { offset: r.start, len: r.len() });
                }
                segs.push(Segment::Bytes(Bytes::from(mp.trailer.clone())));
                (StatusCode::PARTIAL_CONTENT, segs, mp.body_len())
            }
        };
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        let file_body = match segments.as_slice() {
            // Only bodies large enough for sendfile to pay (the others stay one allocation less).
            [Segment::File { offset, len }] if !head && *len >= crate::http1_send::SENDFILE_MIN => {
                Some(FileBody {
                    path: info.path.clone(),
                    offset: *offset,
                    len: *len,
                    file_len: info.len,
                    mtime: info.mtime,
                })
            }
            _ => None,
        };
        let body = if head {
            body::empty()
        } else if let Some(data) = &cached {
            // Serve from memory: slices of the cached bytes, no file I/O.
            let parts: Vec<Bytes> = segments
                .iter()
                .map(|s| match s {
                    Segment::Bytes(b) => b.clone(),
                    Segment::File { offset, len } => data.slice(*offset as usize..(*offset + *len) as usize),
                })
                .collect();
            if parts.len() == 1 {
                body::full(parts.into_iter().next().unwrap_or_default())
            } else {
                body::segments(info.path.clone(), parts.into_iter().map(Segment::Bytes).collect())
            }
        } else {
            body::segments(info.path.clone(), segments)
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        if let Some(f) = file_body {
            r.extensions_mut().insert(f);
        }
        if status == StatusCode::OK && siblings.is_empty() && cached.is_some() {
            r.extensions_mut().insert(ServedFile {
                path: info.path.clone(),
                len: info.len,
                mtime: info.mtime,
            });
        }
        if self.config.push && status == StatusCode::OK && !head && content_type.starts_with("text/html") {
            let pages = &self.config.push_pages;
            let list = match pages.get(req.uri().path()).or_else(|| pages.get(url)) {
                Some(list) => list.clone(),
                None => cached.as_ref().map(|d| crate::push::linked_resources(d, url)).unwrap_or_default(),
            };
            if !list.is_empty() {
                r.extensions_mut().insert(PushList(list));
            }
        }
        r
    }

    async fn put(&self, req: Request<RequestBody>, root: &Path, clean: &CleanPath) -> Response<Body> {
        if clean.trailing_slash || clean.segments.is_empty() {
            return error_page(StatusCode::METHOD_NOT_ALLOWED, "cannot PUT a directory", false);
        }
        if let Some(n) = content_length(req.headers())
            && n > self.config.max_body
        {
            return too_large(self.config.max_body);
        }
        let rel = clean.relative();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let target_name = rel.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        // The parent must resolve inside the root (no symlink escapes), created if missing.
        let parent = root.join(&parent_rel);
        if std::fs::create_dir_all(&parent).is_err() {
            return error_page(StatusCode::CONFLICT, "cannot create the parent directory", false);
        }
        let parent = match std::fs::canonicalize(&parent) {
            Ok(p) if path::within_root(root, &p) => p,
            _ => return error_page(StatusCode::FORBIDDEN, "forbidden", false),
        };
        let target = parent.join(&target_name);
        let existing = match store::lookup(root, &rel) {
            Lookup::File(f) => Some(f),
            Lookup::NotFound => None,
            _ => return error_page(StatusCode::CONFLICT, "a directory (or something else) is there", false),
        };
        let h = req.headers();
        let pre = Preconditions {
            if_match: hstr(h, header::IF_MATCH),
            if_none_match: hstr(h, header::IF_NONE_MATCH),
            if_modified_since: None,
            if_unmodified_since: hstr(h, header::IF_UNMODIFIED_SINCE),
        };
        let failed = match &existing {
            Some(f) => {
                conditional::evaluate(&pre, &Validators::for_file(f.len, f.mtime, ""), false)
                    != Outcome::Proceed
            }
            None => pre.if_match.is_some(),
        };
        if failed {
            return error_page(StatusCode::PRECONDITION_FAILED, "precondition failed", false);
        }
        let data = match req.into_body().collect(self.config.max_body).await {
            Ok(d) => d,
            Err(BodyError::TooLarge(n)) => return too_large(n),
            Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.to_string(), false),
        };
        let written = appnet_netkit::files::write_atomic(&target, &data);
        self.resolve.clear();
        if let Err(e) = written {
            tracing::warn!("upload to {} failed: {e}", target.display());
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, "could not store the file", false);
        }
        let mut r = Response::new(body::empty());
        if existing.is_some() {
            *r.status_mut() = StatusCode::NO_CONTENT;
        } else {
            *r.status_mut() = StatusCode::CREATED;
            if let Ok(v) = HeaderValue::from_str(&clean.url()) {
                r.headers_mut().insert(header::LOCATION, v);
            }
        }
        r
    }

    fn delete(&self, req: &Request<RequestBody>, root: &Path, clean: &CleanPath) -> Response<Body> {
        match store::lookup(root, &clean.relative()) {
            Lookup::File(f) => {
                let h = req.headers();
                let pre = Preconditions {
                    if_match: hstr(h, header::IF_MATCH),
                    if_none_match: hstr(h, header::IF_NONE_MATCH),
                    if_modified_since: None,
                    if_unmodified_since: hstr(h, header::IF_UNMODIFIED_SINCE),
                };
                if conditional::evaluate(&pre, &Validators::for_file(f.len, f.mtime, ""), false)
                    != Outcome::Proceed
                {
                    return error_page(StatusCode::PRECONDITION_FAILED, "precondition failed", false);
                }
                let removed = std::fs::remove_file(&f.path);
                self.resolve.clear();
                match removed {
                    Ok(()) => {
                        let mut r = Response::new(body::empty());
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        r
                    }
                    Err(_) => error_page(StatusCode::INTERNAL_SERVER_ERROR, "could not delete", false),
                }
            }
            Lookup::NotFound => error_page(StatusCode::NOT_FOUND, "not found", false),
            _ => error_page(StatusCode::FORBIDDEN, "only files can be deleted", false),
        }
    }

    async fn echo(&self, req: Request<RequestBody>) -> Response<Body> {
        let head = req.method() == Method::HEAD;
        let (parts, body) = req.into_parts();
        if let Some(n) = content_length(&parts.headers)
            && n > self.config.max_body
        {
            return too_large(self.config.max_body);
        }
        let data = match body.collect(self.config.max_body).await {
            Ok(d) => d,
            Err(BodyError::TooLarge(n)) => return too_large(n),
            Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.to_string(), head),
        };
        let mut text = format!("{} {} {:?}\n", parts.method, parts.uri, parts.version);
        for (name, value) in &parts.headers {
            text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
        }
        text.push('\n');
        let mut out = text.into_bytes();
        out.extend_from_slice(&data);
        let mut r = bytes_response(StatusCode::OK, "text/plain; charset=utf-8", out.into(), head);
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        r
    }

    async fn cart(&self, req: Request<RequestBody>, conn: &ConnInfo) -> Response<Body> {
        let head = req.method() == Method::HEAD;
        let cookie = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(apps::session_from_cookie)
            .map(str::to_string);
        let op = match *req.method() {
            Method::GET | Method::HEAD => apps::parse_op(req.uri().query().unwrap_or("")),
            Method::POST => {
                let query_op = apps::parse_op(req.uri().query().unwrap_or(""));
                match req.into_body().collect(64 * 1024).await {
                    Ok(b) if !b.is_empty() => apps::parse_op(&String::from_utf8_lossy(&b)),
                    Ok(_) => query_op,
                    Err(BodyError::TooLarge(n)) => return too_large(n),
                    Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.to_string(), false),
                }
            }
            _ => {
                let mut r = error_page(StatusCode::METHOD_NOT_ALLOWED, "the cart takes GET and POST", head);
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
                return r;
            }
        };
        let view = self.carts.apply(cookie.as_deref(), op, conn.peer.ip(), Instant::now());
        let status = if view.rate_limited { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::OK };
        let mut r = bytes_response(status, "text/plain; charset=utf-8", apps::render(&view).into(), head);
        let hs = r.headers_mut();
        hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        hs.insert(header::VARY, HeaderValue::from_static("Cookie"));
        if view.rate_limited {
            hs.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if view.new_session
            && let Some(id) = &view.session
            && let Ok(v) = HeaderValue::from_str(&apps::set_cookie(id, conn.secure))
        {
            hs.insert(header::SET_COOKIE, v);
        }
        r
    }
}

fn host_only(host: &str) -> String {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    host.rsplit_once(':')
        .map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
        .to_string()
}

fn hstr(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    hstr(h, header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

fn finish_headers(resp: &mut Response<Body>) {
    resp.headers_mut().insert(header::SERVER, HeaderValue::from_static(SERVER));
}

fn bytes_response(status: StatusCode, content_type: &'static str, data: Bytes, head: bool) -> Response<Body> {
    let len = data.len();
    let mut r = Response::new(if head { body::empty() } else { body::full(data) });
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// An HTML error page for `status` (headers only for HEAD).
pub fn error_page(status: StatusCode, detail: &str, head: bool) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head><body><h1>{code} {reason}</h1><p>{}</p><hr>{SERVER}</body></html>\n",
        listing::html_escape(detail),
        code = status.as_u16()
    );
    bytes_response(status, "text/html; charset=utf-8", html.into(), head)
}

fn too_large(limit: u64) -> Response<Body> {
    let mut r = error_page(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request bodies are limited to {limit} bytes"),
        false,
    );
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r.extensions_mut().insert(CloseAfter);
    r
}

fn redirect(status: StatusCode, to: &str, head: bool) -> Response<Body> {
    let mut r = error_page(status, &format!("moved to {to}"), head);
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Whether a request version is HTTP/1.x (for the drivers' keep-alive decisions).
pub fn is_http1(v: Version) -> bool {
    v == Version::HTTP_10 || v == Version::HTTP_11
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_forms() {
        assert_eq!(host_only("www.foo.com:8080"), "www.foo.com");
        assert_eq!(host_only("www.foo.com"), "www.foo.com");
        assert_eq!(host_only("[::1]:80"), "::1");
    }
}
