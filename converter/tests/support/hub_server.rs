//! A hand-written stand-in for the Hugging Face Hub on 127.0.0.1, for the download tests (this
//! crate's `tests/hub.rs` and the CLI's): the repository API (`/api/models/{repo}/revision/
//! {rev}`: commit and file list) and `/{repo}/resolve/{rev}/{file}` with the headers the hub
//! sends — `X-Repo-Commit`, `ETag`, and for LFS files (`*.safetensors`) a 302 to a storage URL
//! with `X-Linked-Etag` (the sha256) and `X-Linked-Size` — plus byte ranges (`206` with
//! `Content-Range`). Faults on demand: a file cut off halfway the first time it is fetched
//! whole, a gated repository (401 without the right token), a listed file that is 404, content
//! that does not match its checksum, a size that differs from the announced one. One request
//! per connection; every request is logged. The server stops when told or dropped. LFS files
//! are redirected to `localhost` rather than `127.0.0.1`: another host name, as the hub's
//! storage is another host.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The token a gated repository accepts.
pub const GOOD_TOKEN: &str = "hf_test_token";

/// One repository the server holds.
#[derive(Clone, Default)]
pub struct Repo {
    pub id: String,
    pub commit: String,
    pub files: BTreeMap<String, Vec<u8>>,
    /// Needs `Authorization: Bearer GOOD_TOKEN` for its files.
    pub gated: bool,
    /// Listed, but 404 when fetched.
    pub missing: Vec<String>,
    /// Served with one byte changed (its checksum is the true content's).
    pub corrupt: Vec<String>,
    /// Announced 7 bytes shorter than it is.
    pub short_size: Vec<String>,
    /// The first whole-file transfer stops halfway (the connection is closed).
    pub interrupt_once: Vec<String>,
    /// A misbehaving hub for every file of the repository.
    pub quirk: Quirk,
    /// Renamed: its files answer with a relative redirect to this repository's.
    pub moved_to: Option<String>,
}

/// How a hostile or broken hub answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quirk {
    #[default]
    None,
    /// A 302 without `Location`.
    RedirectWithoutLocation,
    /// An etag that is a path out of the cache.
    EtagPath,
    /// `X-Repo-Commit` of another commit than the API's.
    OtherCommit,
}

impl Repo {
    /// Every file of the checkpoint folder `dir`, plus files a downloader must not take.
    pub fn from_dir(id: &str, dir: &Path) -> Self {
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_file() && !name.starts_with('.') {
                files.insert(name, std::fs::read(e.path()).unwrap());
            }
        }
        files.insert("README.md".into(), b"# a model card\n".to_vec());
        files.insert("pytorch_model.bin".into(), vec![0u8; 4096]);
        let commit = hex(&Sha256::digest(id.as_bytes()))[..40].to_owned();
        Repo {
            id: id.to_owned(),
            commit,
            files,
            ..Default::default()
        }
    }
}

/// What a client asked for.
#[derive(Clone, Debug)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub auth: Option<String>,
    pub accept_encoding: Option<String>,
    pub status: u16,
}

struct State {
    repos: Vec<Repo>,
    interrupted: HashSet<String>,
    log: Vec<Logged>,
}

/// A running server; stopped by [`HubServer::stop`] or on drop.
pub struct HubServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

impl HubServer {
    pub fn start(repos: Vec<Repo>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            repos,
            interrupted: HashSet::new(),
            log: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let _ = handle(c, addr, &st);
                }
            }
        });
        HubServer {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Stops accepting and closes the port: later connections are refused.
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
            t.join().unwrap();
        }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Bytes of `body` sent before the connection is closed (an interrupted transfer).
    cut: Option<usize>,
}

fn reply(status: u16, headers: Vec<(&str, String)>, body: Vec<u8>) -> Reply {
    Reply {
        status,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        body,
        cut: None,
    }
}

fn error(status: u16, code: &str) -> Reply {
    reply(
        status,
        vec![("X-Error-Code", code.to_owned())],
        format!("{{\"error\": \"{code}\"}}").into_bytes(),
    )
}

fn handle(c: TcpStream, addr: SocketAddr, state: &Mutex<State>) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(c.try_clone()?.take(64 << 10));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut st = state.lock().unwrap();
    let r = route(&path, &headers, addr, &mut st);
    st.log.push(Logged {
        path,
        range: headers.get("range").cloned(),
        auth: headers.get("authorization").cloned(),
        accept_encoding: headers.get("accept-encoding").cloned(),
        status: r.status,
    });
    drop(st);
    send(c, r)
}

fn send(mut c: TcpStream, r: Reply) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\n", r.status);
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    ));
    c.write_all(head.as_bytes())?;
    let n = r.cut.unwrap_or(r.body.len());
    c.write_all(&r.body[..n])?;
    c.flush()?;
    c.shutdown(std::net::Shutdown::Both)
}

fn route(
    path: &str,
    headers: &BTreeMap<String, String>,
    addr: SocketAddr,
    st: &mut State,
) -> Reply {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /api/models/{org}/{name}/revision/{rev}
    if parts.len() >= 6 && parts[0] == "api" && parts[1] == "models" && parts[4] == "revision" {
        let id = format!("{}/{}", parts[2], parts[3]);
        let Some(repo) = st.repos.iter().find(|r| r.id == id) else {
            return error(404, "RepoNotFound");
        };
        let rev = parts[5..].join("/").replace("%2F", "/");
        if rev != "main" && rev != repo.commit {
            return error(404, "RevisionNotFound");
        }
        let siblings: Vec<serde_json::Value> = repo
            .files
            .keys()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let body = serde_json::json!({"id": id, "sha": repo.commit, "siblings": siblings});
        return reply(
            200,
            vec![("Content-Type", "application/json".into())],
            body.to_string().into_bytes(),
        );
    }
    // /cdn/{sha256}: the storage LFS files are redirected to.
    if parts.len() == 2 && parts[0] == "cdn" {
        let found = st.repos.iter().find_map(|repo| {
            repo.files
                .iter()
                .find(|(_, b)| sha256(b) == parts[1])
                .map(|(n, b)| (repo.clone(), n.clone(), b.clone()))
        });
        let Some((repo, name, bytes)) = found else {
            return error(404, "NoSuchKey");
        };
        return serve(st, &repo, &name, &bytes, headers);
    }
    // /{org}/{name}/resolve/{rev}/{file}
    if parts.len() >= 5 && parts[2] == "resolve" {
        let id = format!("{}/{}", parts[0], parts[1]);
        let Some(repo) = st.repos.iter().find(|r| r.id == id).cloned() else {
            return error(404, "RepoNotFound");
        };
        let rev = parts[3].replace("%2F", "/");
        if rev != "main" && rev != repo.commit {
            return error(404, "RevisionNotFound");
        }
        if let Some(to) = &repo.moved_to {
            let rest = parts[3..].join("/");
            return reply(
                307,
                vec![("Location", format!("/{to}/resolve/{rest}"))],
                Vec::new(),
            );
        }
        match repo.quirk {
            Quirk::RedirectWithoutLocation => return reply(302, Vec::new(), Vec::new()),
            Quirk::EtagPath => {
                return reply(
                    200,
                    vec![
                        ("X-Repo-Commit", repo.commit.clone()),
                        ("ETag", "\"../../../escaped\"".into()),
                    ],
                    b"{}".to_vec(),
                );
            }
            Quirk::OtherCommit => {
                return reply(
                    200,
                    vec![
                        ("X-Repo-Commit", "f".repeat(40)),
                        ("ETag", "\"abc\"".into()),
                    ],
                    b"{}".to_vec(),
                );
            }
            Quirk::None => {}
        }
        if repo.gated
            && headers.get("authorization").map(String::as_str)
                != Some(format!("Bearer {GOOD_TOKEN}").as_str())
        {
            return error(401, "GatedRepo");
        }
        let name = parts[4..].join("/");
        let Some(bytes) = repo.files.get(&name).cloned() else {
            return error(404, "EntryNotFound");
        };
        if repo.missing.contains(&name) {
            return error(404, "EntryNotFound");
        }
        let commit = ("X-Repo-Commit", repo.commit.clone());
        if name.ends_with(".safetensors") {
            let sum = sha256(&bytes);
            let announced = if repo.short_size.contains(&name) {
                bytes.len() - 7
            } else {
                bytes.len()
            };
            return reply(
                302,
                vec![
                    commit,
                    (
                        "Location",
                        format!("http://localhost:{}/cdn/{sum}", addr.port()),
                    ),
                    ("X-Linked-Etag", format!("\"{sum}\"")),
                    ("X-Linked-Size", announced.to_string()),
                    ("ETag", format!("\"{}\"", &sha256(name.as_bytes())[..40])),
                ],
                Vec::new(),
            );
        }
        let mut r = serve(st, &repo, &name, &bytes, headers);
        r.headers
            .push(("X-Repo-Commit".into(), repo.commit.clone()));
        r.headers
            .push(("ETag".into(), format!("\"{}\"", &sha256(&bytes)[..40])));
        return r;
    }
    error(404, "NotFound")
}

/// `bytes` with the faults `repo` asks for, honouring a `Range` header.
fn serve(
    st: &mut State,
    repo: &Repo,
    name: &str,
    bytes: &[u8],
    headers: &BTreeMap<String, String>,
) -> Reply {
    let mut content = bytes.to_vec();
    if repo.corrupt.iter().any(|n| n == name) {
        let mid = content.len() / 2;
        content[mid] ^= 0x5a;
    }
    let total = if repo.short_size.iter().any(|n| n == name) {
        content.len() - 7
    } else {
        content.len()
    };
    let range = headers.get("range").and_then(|r| {
        let spec = r.strip_prefix("bytes=")?;
        let (a, b) = spec.split_once('-')?;
        let a: usize = a.parse().ok()?;
        let b: usize = if b.is_empty() {
            content.len() - 1
        } else {
            b.parse().ok()?
        };
        Some((a, b.min(content.len() - 1)))
    });
    match range {
        Some((a, _)) if a >= content.len() => reply(
            416,
            vec![("Content-Range", format!("bytes */{total}"))],
            Vec::new(),
        ),
        Some((a, b)) => reply(
            206,
            vec![("Content-Range", format!("bytes {a}-{b}/{total}"))],
            content[a..=b].to_vec(),
        ),
        None => {
            let mut r = reply(200, Vec::new(), content);
            // The first whole-file transfer of an `interrupt_once` file stops halfway.
            let key = format!("{}/{name}", repo.id);
            if repo.interrupt_once.iter().any(|n| n == name) && st.interrupted.insert(key) {
                r.cut = Some(r.body.len() / 2);
            }
            r
        }
    }
}
