//! `perfvm-target`: the reference HTTP upload server that perfvm measures
//! inside the guest VM.
//!
//! It has three store modes whose memory behaviour is the thing being measured:
//! - `stream`: the body goes to its file chunk by chunk with plain writes, like
//!   most servers: the process stays small, the file's page cache grows in the
//!   cgroup until the kernel writes it back and reclaims it.
//! - `drop-cache`: like `stream`, but every 8 MiB the file is fdatasync'ed and
//!   its page cache dropped, so even the cgroup's memory.current stays flat.
//! - `memory`: the whole body is buffered in a growing `Vec<u8>` first (as many
//!   real web apps do) and only then written out. Bodies larger than RAM are
//!   *meant* to get this process OOM-killed; there is deliberately no guard.

use std::fmt::Display;
use std::io::{self, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use futures_util::{Stream, StreamExt};
use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

/// Drop-cache mode: flush + drop page cache after this many bytes, so neither
/// dirty nor clean pages of the file pile up in the cgroup's memory.
const SYNC_EVERY: u64 = 8 * 1024 * 1024;
/// Stream mode: body chunks from hyper are small (~8-64 KiB); batch them so we
/// pay one blocking-pool hop per MiB instead of per chunk.
const WRITE_BUF: usize = 1024 * 1024;
/// GET /files: bounded read size, so downloads never hold more than this.
const READ_CHUNK: usize = 256 * 1024;
const MAX_NAME_LEN: usize = 200;
const PARTIAL_MARKER: &str = ".partial-";

#[derive(Parser, Debug)]
#[command(
    name = "perfvm-target",
    about = "Reference HTTP upload server measured by perfvm"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: String,
    /// Directory uploaded files are stored in (created if missing).
    #[arg(long, default_value = "/var/lib/perfvm-target/files")]
    dir: PathBuf,
    /// How uploads are stored: streamed to disk, or buffered fully in memory.
    #[arg(long, value_enum, default_value_t = Mode::Stream)]
    mode: Mode,
    /// Require a login first: `POST /login` with the password (form field or JSON key
    /// `password`) read from this environment variable sets a session cookie, and uploads and
    /// downloads without a valid session get 401. For testing login flows.
    #[arg(long, value_name = "ENV_VAR")]
    login_password_env: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    Stream,
    DropCache,
    Memory,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Stream => "stream",
            Mode::DropCache => "drop-cache",
            Mode::Memory => "memory",
        }
    }
}

#[derive(Clone)]
struct AppState {
    /// Absolute storage directory (the JSON response reports absolute paths).
    dir: Arc<PathBuf>,
    mode: Mode,
    /// `--login-password-env`: the password and the sessions handed out.
    login: Option<Arc<Login>>,
}

struct Login {
    password: String,
    sessions: std::sync::Mutex<std::collections::HashSet<String>>,
}

const SESSION_COOKIE: &str = "perfvm_session";

impl AppState {
    fn new(dir: PathBuf, mode: Mode) -> Self {
        Self {
            dir: Arc::new(dir),
            mode,
            login: None,
        }
    }

    fn with_login(mut self, password: String) -> Self {
        self.login = Some(Arc::new(Login { password, sessions: Default::default() }));
        self
    }
}

#[derive(Serialize, Debug)]
struct Stored {
    name: String,
    bytes: u64,
    mode: Mode,
    path: String,
}

/// Byte count a handler attaches to its response for the per-request log line.
#[derive(Clone, Copy)]
struct LoggedBytes(u64);

/// A failed request: status, one-line message, and bytes received/sent so far.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    msg: String,
    bytes: u64,
}

impl Failure {
    fn bad_request(msg: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            msg: msg.into(),
            bytes: 0,
        }
    }
    /// The request body broke off (usually a client disconnect).
    fn body(err: impl Display, bytes: u64) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            msg: format!("error reading request body: {err}"),
            bytes,
        }
    }
    /// Writing to disk failed (ENOSPC, EIO, ...).
    fn disk(err: impl Display, bytes: u64) -> Self {
        Self {
            status: StatusCode::INSUFFICIENT_STORAGE,
            msg: format!("error writing file: {err}"),
            bytes,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut resp = (self.status, format!("{}\n", self.msg)).into_response();
        resp.extensions_mut().insert(LoggedBytes(self.bytes));
        resp
    }
}

/// Builds the router; shared by `main` and the tests.
fn app(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/upload/{name}", put(put_upload))
        .route("/upload", post(post_upload))
        .route("/files/{name}", get(get_file))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_session));
    Router::new()
        .route("/health", get(health))
        .route("/login", post(login))
        .merge(guarded)
        // Uploads are many GiB; axum's 2 MB default would reject them.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// One journal line per request. For GET /files the time is until the
/// response headers are ready, not until the body has been sent.
async fn log_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let bytes = resp.extensions().get::<LoggedBytes>().map_or(0, |b| b.0);
    let ms = start.elapsed().as_millis();
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        info!(
            "{method} {path} bytes={bytes} mode={} ms={ms} status={status}",
            state.mode.as_str()
        );
    } else {
        warn!(
            "{method} {path} bytes={bytes} mode={} ms={ms} status={status}",
            state.mode.as_str()
        );
    }
    resp
}

async fn health() -> &'static str {
    "ok\n"
}

/// The `password` of a urlencoded form or a JSON object.
fn password_in(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return v.get("password")?.as_str().map(str::to_owned);
    }
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "password").then(|| perfvm::upload::session::percent_decode(&v.replace('+', " ")))
    })?
}

/// `POST /login`: the right password gets a session cookie; a wrong one 403.
async fn login(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(l) = &state.login else {
        return (StatusCode::NOT_FOUND, "no login on this server\n").into_response();
    };
    if password_in(&body).as_deref() != Some(l.password.as_str()) {
        return (StatusCode::FORBIDDEN, "wrong password\n").into_response();
    }
    let mut raw = [0u8; 16];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut raw)).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n").into_response();
    }
    let token = hex::encode(raw);
    l.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(token.clone());
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly");
    ([(header::SET_COOKIE, cookie)], axum::Json(serde_json::json!({"session": "ok"}))).into_response()
}

/// Uploads and downloads need a session when the server has a login.
async fn require_session(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(l) = &state.login {
        let valid = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
            .any(|t| l.sessions.lock().unwrap_or_else(|e| e.into_inner()).contains(t));
        if !valid {
            return (StatusCode::UNAUTHORIZED, "login required\n").into_response();
        }
    }
    next.run(req).await
}

/// Accepts `[A-Za-z0-9._-]{1,200}` not starting with `.`; this alone rules out
/// path traversal (no separators, no `.`/`..`) and clashes with partial files.
fn validate_name(name: &str) -> Result<(), Failure> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Failure::bad_request(format!(
            "invalid name: length must be 1..={MAX_NAME_LEN}"
        )));
    }
    if name.starts_with('.') {
        return Err(Failure::bad_request(
            "invalid name: must not start with '.'",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Failure::bad_request(
            "invalid name: only [A-Za-z0-9._-] allowed",
        ));
    }
    Ok(())
}

async fn put_upload(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    if let Err(e) = validate_name(&name) {
        return e.into_response();
    }
    respond(store(&state, name, body.into_data_stream()).await)
}

async fn post_upload(State(state): State<AppState>, mut multipart: Multipart) -> Response {
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => {
                return Failure::bad_request("no file part in multipart body").into_response();
            }
            Err(e) => return Failure::body(e, 0).into_response(),
        };
        let is_file = field.file_name().is_some() || field.name() == Some("file");
        if !is_file {
            // Dropping the field lets multer skip over its data.
            continue;
        }
        let Some(raw) = field.file_name() else {
            return Failure::bad_request("file part has no filename").into_response();
        };
        // Browsers (old IE) may send full client paths; keep the last component.
        let name = raw.rsplit(['/', '\\']).next().unwrap_or(raw).to_owned();
        if let Err(e) = validate_name(&name) {
            return e.into_response();
        }
        // Later parts (if any) are not read; the first file part is the upload.
        return respond(store(&state, name, field).await);
    }
}

fn respond(result: Result<Stored, Failure>) -> Response {
    match result {
        Ok(stored) => {
            let bytes = stored.bytes;
            let mut resp = (StatusCode::CREATED, axum::Json(stored)).into_response();
            resp.extensions_mut().insert(LoggedBytes(bytes));
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn get_file(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    if let Err(e) = validate_name(&name) {
        return e.into_response();
    }
    let path = state.dir.join(&name);
    let not_found = || (StatusCode::NOT_FOUND, "not found\n").into_response();
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return not_found(),
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("open: {e}\n")).into_response();
        }
    };
    let len = match file.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return not_found(),
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("stat: {e}\n")).into_response();
        }
    };
    // Bounded chunks; the state is None after an error so the stream ends.
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        match file.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut resp = Response::new(Body::from_stream(chunks));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    resp.extensions_mut().insert(LoggedBytes(len));
    resp
}

/// Unique temp name in the target dir (same filesystem, so rename is atomic).
/// The leading '.' keeps it out of the valid-name space, so it can never be
/// fetched or overwritten by a client.
fn partial_path(dir: &FsPath, name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}{PARTIAL_MARKER}{}-{n}", std::process::id()))
}

/// Receives the body in the configured mode, then atomically publishes it.
async fn store<S, E>(state: &AppState, name: String, body: S) -> Result<Stored, Failure>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    let dir = state.dir.as_ref().clone();
    let partial = partial_path(&dir, &name);
    let final_path = dir.join(&name);
    let bytes = match state.mode {
        Mode::Stream => store_stream(&partial, &final_path, body, false).await?,
        Mode::DropCache => store_stream(&partial, &final_path, body, true).await?,
        Mode::Memory => store_memory(&partial, &final_path, body).await?,
    };
    Ok(Stored {
        name,
        bytes,
        mode: state.mode,
        path: final_path.display().to_string(),
    })
}

/// Stream and drop-cache modes: chunks are written as they come; with `drop_cache` the file's
/// page cache is dropped every `SYNC_EVERY` bytes and the file synced before it is published.
async fn store_stream<S, E>(partial: &FsPath, final_path: &FsPath, body: S, drop_cache: bool) -> Result<u64, Failure>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    let file = {
        let p = partial.to_owned();
        blocking(move || std::fs::File::create_new(&p))
            .await
            .map_err(|e| Failure::disk(e, 0))?
    };
    let mut sink = StreamSink {
        file: Some(file),
        buf: Vec::with_capacity(WRITE_BUF),
        unsynced: 0,
        drop_cache,
    };
    let mut received: u64 = 0;
    let mut body = std::pin::pin!(body);
    let result = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Failure::body(e, received))?;
            received += chunk.len() as u64;
            sink.push(&chunk)
                .await
                .map_err(|e| Failure::disk(e, received))?;
        }
        sink.finish(partial.to_owned(), final_path.to_owned())
            .await
            .map_err(|e| Failure::disk(e, received))
    }
    .await;
    if result.is_err() {
        remove_partial(partial).await;
    }
    result.map(|()| received)
}

/// Memory mode: deliberately the naive web-app pattern. The Vec grows by
/// reallocation with no presizing (real apps don't trust Content-Length),
/// so resident memory tracks the body size and large bodies get OOM-killed.
async fn store_memory<S, E>(partial: &FsPath, final_path: &FsPath, body: S) -> Result<u64, Failure>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Display,
{
    let mut data: Vec<u8> = Vec::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Failure::body(e, data.len() as u64))?;
        data.extend_from_slice(&chunk);
    }
    let received = data.len() as u64;
    let (p, f) = (partial.to_owned(), final_path.to_owned());
    let result = blocking(move || {
        let mut file = std::fs::File::create_new(&p)?;
        file.write_all(&data)?;
        // Free the buffer before the (possibly slow) fsync.
        drop(data);
        file.sync_all()?;
        publish(&p, &f)
    })
    .await;
    if let Err(e) = result {
        remove_partial(partial).await;
        return Err(Failure::disk(e, received));
    }
    Ok(received)
}

/// Batches body chunks into ~1 MiB writes done on the blocking pool; with
/// `drop_cache`, drops the file's page cache every `SYNC_EVERY` bytes.
struct StreamSink {
    /// Taken while a blocking write is in flight.
    file: Option<std::fs::File>,
    buf: Vec<u8>,
    unsynced: u64,
    drop_cache: bool,
}

impl StreamSink {
    async fn push(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() >= WRITE_BUF {
            self.write_buf().await?;
        }
        Ok(())
    }

    async fn write_buf(&mut self) -> io::Result<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("file already closed"))?;
        let mut buf = std::mem::take(&mut self.buf);
        let unsynced = self.unsynced + buf.len() as u64;
        let drop_cache = self.drop_cache;
        let (file, buf, res) = blocking_raw(move || {
            let res = file.write_all(&buf).and_then(|()| {
                if drop_cache && unsynced >= SYNC_EVERY {
                    drop_page_cache(&file)
                } else {
                    Ok(())
                }
            });
            buf.clear();
            (file, buf, res)
        })
        .await?;
        res?;
        self.file = Some(file);
        // Hand the (cleared) allocation back so it is reused, not regrown.
        self.buf = buf;
        self.unsynced = if unsynced >= SYNC_EVERY { 0 } else { unsynced };
        Ok(())
    }

    async fn finish(mut self, partial: PathBuf, final_path: PathBuf) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.write_buf().await?;
        }
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("file already closed"))?;
        if !self.drop_cache {
            // Like most servers: close and rename, the data left to the kernel's writeback.
            return blocking(move || {
                drop(file);
                std::fs::rename(&partial, &final_path)
            })
            .await;
        }
        blocking(move || {
            file.sync_all()?;
            // Best effort: the data is safe on disk already, only cache is left.
            let _ = posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
            drop(file);
            publish(&partial, &final_path)
        })
        .await
    }
}

/// fdatasync first: DONTNEED cannot drop dirty pages, only clean ones.
fn drop_page_cache(file: &std::fs::File) -> io::Result<()> {
    nix::unistd::fdatasync(file).map_err(io::Error::from)?;
    posix_fadvise(file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).map_err(io::Error::from)
}

/// Atomic rename into place, then fsync the directory so the rename survives
/// a crash (the whole point of the partial file).
fn publish(partial: &FsPath, final_path: &FsPath) -> io::Result<()> {
    std::fs::rename(partial, final_path)?;
    if let Some(dir) = final_path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

async fn remove_partial(partial: &FsPath) {
    if let Err(e) = tokio::fs::remove_file(partial).await
        && e.kind() != io::ErrorKind::NotFound
    {
        warn!("could not remove partial file {}: {e}", partial.display());
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    blocking_raw(f).await?
}

async fn blocking_raw<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)
}

/// A previous instance may have been OOM-killed (memory mode is expected to
/// be) or stopped mid-upload; its partial files would only waste disk.
fn remove_stale_partials(dir: &FsPath) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(PARTIAL_MARKER) && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    // systemd stops the unit with SIGTERM; Ctrl-C is for manual runs.
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        // The journal stores raw bytes; colour codes would be noise there.
        .with_ansi(false)
        .init();

    std::fs::create_dir_all(&cli.dir).with_context(|| format!("creating {}", cli.dir.display()))?;
    let dir = std::fs::canonicalize(&cli.dir)
        .with_context(|| format!("resolving {}", cli.dir.display()))?;
    match remove_stale_partials(&dir) {
        Ok(0) => {}
        Ok(n) => info!("removed {n} stale partial file(s) from {}", dir.display()),
        Err(e) => warn!(
            "could not clean stale partial files in {}: {e}",
            dir.display()
        ),
    }

    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    info!(
        "perfvm-target starting: mode={} listen={} dir={}",
        cli.mode.as_str(),
        listener
            .local_addr()
            .map_or(cli.listen.clone(), |a| a.to_string()),
        dir.display()
    );
    let mut state = AppState::new(dir, cli.mode);
    if let Some(var) = &cli.login_password_env {
        let pw = std::env::var(var).ok().filter(|p| !p.is_empty()).with_context(|| format!("--login-password-env {var}: the variable is not set"))?;
        info!("uploads need a login (POST /login)");
        state = state.with_login(pw);
    }
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
    info!("perfvm-target stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::AsyncWriteExt;

    /// Deterministic, incompressible-looking test data (xorshift64).
    fn pattern(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    async fn spawn(mode: Mode) -> (SocketAddr, tempfile::TempDir) {
        spawn_with(mode, None).await
    }

    async fn spawn_with(mode: Mode, password: Option<&str>) -> (SocketAddr, tempfile::TempDir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = std::fs::canonicalize(tmp.path()).expect("canonicalize");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut state = AppState::new(dir, mode);
        if let Some(p) = password {
            state = state.with_login(p.to_string());
        }
        let router = app(state);
        tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        (addr, tmp)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
    }

    fn files_in(dir: &FsPath) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    async fn put_roundtrip(mode: Mode, len: usize) {
        let (addr, tmp) = spawn(mode).await;
        let data = pattern(len, 42);
        let c = client();
        let resp = c
            .put(format!("http://{addr}/upload/blob-1.bin"))
            .body(data.clone())
            .send()
            .await
            .expect("put");
        assert_eq!(resp.status(), 201);
        let json: serde_json::Value = resp.json().await.expect("json");
        let path = tmp.path().canonicalize().expect("canon").join("blob-1.bin");
        assert_eq!(json["name"], "blob-1.bin");
        assert_eq!(json["bytes"], len as u64);
        assert_eq!(json["mode"], mode.as_str());
        assert_eq!(json["path"], path.display().to_string());
        assert!(FsPath::new(json["path"].as_str().expect("path str")).is_absolute());
        assert!(
            std::fs::read(&path).expect("read stored") == data,
            "stored bytes differ"
        );
        // No partial files left behind.
        assert_eq!(files_in(tmp.path()), vec!["blob-1.bin".to_string()]);

        let resp = c
            .get(format!("http://{addr}/files/blob-1.bin"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        assert_eq!(resp.content_length(), Some(len as u64));
        let got = resp.bytes().await.expect("body");
        assert!(got == data, "downloaded bytes differ");
    }

    #[tokio::test]
    async fn put_stream_mode() {
        // Not a multiple of WRITE_BUF so the final partial buffer is exercised.
        put_roundtrip(Mode::Stream, 20 * 1024 * 1024 + 12345).await;
    }

    #[tokio::test]
    async fn put_drop_cache_mode() {
        // > SYNC_EVERY so the fdatasync/fadvise path runs.
        put_roundtrip(Mode::DropCache, 20 * 1024 * 1024 + 12345).await;
    }

    #[tokio::test]
    async fn put_memory_mode() {
        put_roundtrip(Mode::Memory, 5 * 1024 * 1024 + 7).await;
    }

    #[tokio::test]
    async fn put_empty_body() {
        let (addr, tmp) = spawn(Mode::Stream).await;
        let resp = client()
            .put(format!("http://{addr}/upload/empty"))
            .send()
            .await
            .expect("put");
        assert_eq!(resp.status(), 201);
        assert_eq!(
            std::fs::read(tmp.path().join("empty")).expect("read").len(),
            0
        );
    }

    #[tokio::test]
    async fn put_overwrites_existing() {
        let (addr, tmp) = spawn(Mode::Stream).await;
        let c = client();
        for body in [&b"first version"[..], b"2nd"] {
            let resp = c
                .put(format!("http://{addr}/upload/f"))
                .body(body.to_vec())
                .send()
                .await
                .expect("put");
            assert_eq!(resp.status(), 201);
        }
        assert_eq!(std::fs::read(tmp.path().join("f")).expect("read"), b"2nd");
    }

    fn multipart_body(boundary: &str, filename: &str, data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        // A plain form field first: it must be skipped.
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        b
    }

    async fn multipart_roundtrip(mode: Mode) {
        let (addr, tmp) = spawn(mode).await;
        let data = pattern(3 * 1024 * 1024 + 99, 7);
        let boundary = "----perfvmBoundary7MA4YWxkTrZu0gW";
        // Path components in the filename must be stripped.
        let body = multipart_body(boundary, "C:\\Users\\x/some/dir/photo.jpg", &data);
        let c = client();
        let resp = c
            .post(format!("http://{addr}/upload"))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 201);
        let json: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(json["name"], "photo.jpg");
        assert_eq!(json["bytes"], data.len() as u64);
        assert_eq!(json["mode"], mode.as_str());
        assert!(std::fs::read(tmp.path().join("photo.jpg")).expect("read") == data);
        assert_eq!(files_in(tmp.path()), vec!["photo.jpg".to_string()]);

        let got = c
            .get(format!("http://{addr}/files/photo.jpg"))
            .send()
            .await
            .expect("get");
        assert_eq!(got.status(), 200);
        assert!(got.bytes().await.expect("body") == data);
    }

    #[tokio::test]
    async fn multipart_stream_mode() {
        multipart_roundtrip(Mode::Stream).await;
    }

    #[tokio::test]
    async fn multipart_memory_mode() {
        multipart_roundtrip(Mode::Memory).await;
    }

    #[tokio::test]
    async fn multipart_without_file_part_is_400() {
        let (addr, _tmp) = spawn(Mode::Stream).await;
        let boundary = "xyz";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhi\r\n--{boundary}--\r\n"
        );
        let resp = client()
            .post(format!("http://{addr}/upload"))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 400);
    }

    #[tokio::test]
    async fn multipart_bad_filename_is_400() {
        let (addr, tmp) = spawn(Mode::Stream).await;
        let boundary = "xyz";
        let resp = client()
            .post(format!("http://{addr}/upload"))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(multipart_body(boundary, "../..", b"data"))
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 400);
        assert!(files_in(tmp.path()).is_empty());
    }

    #[tokio::test]
    async fn bad_names_are_400() {
        let (addr, tmp) = spawn(Mode::Stream).await;
        let c = client();
        let long = "a".repeat(201);
        for name in [
            "a%2Fb",
            "..%2Fetc",
            ".hidden",
            "a%20b",
            "%C3%A9",
            long.as_str(),
        ] {
            let resp = c
                .put(format!("http://{addr}/upload/{name}"))
                .body("x")
                .send()
                .await
                .expect("put");
            assert_eq!(resp.status(), 400, "PUT {name}");
            let text = resp.text().await.expect("text");
            assert_eq!(
                text.lines().count(),
                1,
                "one-line message for {name}: {text:?}"
            );
            let resp = c
                .get(format!("http://{addr}/files/{name}"))
                .send()
                .await
                .expect("get");
            assert_eq!(resp.status(), 400, "GET {name}");
        }
        assert!(files_in(tmp.path()).is_empty());
    }

    /// reqwest (the url crate) normalizes `..` segments away, even
    /// percent-encoded ones, so send the raw request line ourselves.
    #[tokio::test]
    async fn dotdot_name_is_400() {
        let (addr, _tmp) = spawn(Mode::Stream).await;
        for target in ["/upload/..", "/files/.."] {
            let method = if target.starts_with("/upload") {
                "PUT"
            } else {
                "GET"
            };
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let req = format!(
                "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut resp = String::new();
            s.read_to_string(&mut resp).await.expect("read");
            assert!(
                resp.starts_with("HTTP/1.1 400"),
                "{method} {target}: {resp}"
            );
        }
    }

    #[test]
    fn name_validation() {
        for ok in ["a", "file.bin", "A-b_c.9", &"x".repeat(200)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "../x",
            "a b",
            "é",
            &"x".repeat(201),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn health_ok() {
        let (addr, _tmp) = spawn(Mode::Memory).await;
        let resp = client()
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("text"), "ok\n");
    }

    #[tokio::test]
    async fn missing_file_is_404() {
        let (addr, _tmp) = spawn(Mode::Stream).await;
        let resp = client()
            .get(format!("http://{addr}/files/nope.bin"))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 404);
    }

    /// Client sends part of the body and hangs up: the partial file must be
    /// removed and nothing published under the final name.
    async fn disconnect_cleans_up(mode: Mode) {
        let (addr, tmp) = spawn(mode).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = "PUT /upload/cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n";
        s.write_all(head.as_bytes()).await.expect("write head");
        s.write_all(&pattern(3 * 1024 * 1024, 1))
            .await
            .expect("write body");
        // Half-close: the server sees EOF mid-body; keep reading so we know
        // when it is done with the request.
        s.shutdown().await.expect("shutdown");
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp).await;
        eprintln!(
            "response after disconnect: {:?}",
            String::from_utf8_lossy(&resp)
        );
        assert!(
            files_in(tmp.path()).is_empty(),
            "{:?}",
            files_in(tmp.path())
        );
    }

    #[tokio::test]
    async fn disconnect_stream_mode() {
        disconnect_cleans_up(Mode::Stream).await;
    }

    #[tokio::test]
    async fn disconnect_drop_cache_mode() {
        disconnect_cleans_up(Mode::DropCache).await;
    }

    #[tokio::test]
    async fn disconnect_memory_mode() {
        disconnect_cleans_up(Mode::Memory).await;
    }

    #[tokio::test]
    async fn disk_error_is_507() {
        let (addr, tmp) = spawn(Mode::Stream).await;
        // Removing the storage dir makes creating the partial file fail.
        std::fs::remove_dir(tmp.path()).expect("rmdir");
        let resp = client()
            .put(format!("http://{addr}/upload/x"))
            .body("data")
            .send()
            .await
            .expect("put");
        assert_eq!(resp.status(), 507);
        assert!(
            resp.text()
                .await
                .expect("text")
                .contains("error writing file")
        );
    }

    #[test]
    fn stale_partials_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join(".a.bin.partial-1-0"), b"x").expect("write");
        std::fs::write(tmp.path().join("keep.bin"), b"x").expect("write");
        assert_eq!(remove_stale_partials(tmp.path()).expect("clean"), 1);
        assert_eq!(files_in(tmp.path()), vec!["keep.bin".to_string()]);
    }

    #[tokio::test]
    async fn login_is_required_when_configured() {
        let (addr, _tmp) = spawn_with(Mode::Stream, Some("pa ss&w")).await;
        let c = client();
        let put = |cookie: Option<String>| {
            let mut r = c.put(format!("http://{addr}/upload/f.bin")).body("data");
            if let Some(ck) = cookie {
                r = r.header("Cookie", ck);
            }
            r.send()
        };
        assert_eq!(put(None).await.unwrap().status(), 401);
        assert_eq!(put(Some("perfvm_session=forged".into())).await.unwrap().status(), 401);
        let wrong = c.post(format!("http://{addr}/login")).body("password=nope").send().await.unwrap();
        assert_eq!(wrong.status(), 403);
        assert!(wrong.headers().get("set-cookie").is_none());
        let ok = c.post(format!("http://{addr}/login")).body("user=x&password=pa+ss%26w").send().await.unwrap();
        assert_eq!(ok.status(), 200);
        let cookie = ok.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
        assert!(cookie.starts_with("perfvm_session="));
        assert_eq!(put(Some(format!("a=b; {cookie}"))).await.unwrap().status(), 201);
        let json = c.post(format!("http://{addr}/login")).body(r#"{"password": "pa ss&w"}"#).send().await.unwrap();
        assert_eq!(json.status(), 200);
        // Without --login-password-env nothing changes and /login does not exist.
        let (open, _t) = spawn(Mode::Stream).await;
        assert_eq!(c.put(format!("http://{open}/upload/f")).body("d").send().await.unwrap().status(), 201);
        assert_eq!(c.post(format!("http://{open}/login")).body("password=x").send().await.unwrap().status(), 404);
    }
}
