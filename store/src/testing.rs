//! Real `redis-server` processes for tests and benchmarks, started on free
//! loopback ports so faults (kill, restart empty, pause) can be injected,
//! and compiled tenant configs to write into them.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use veloflux_crds::manifest::ManifestError;
use veloflux_crds::{Manifests, TenantConfig};

/// A client for `url`, connected (waits up to 5 s).
pub async fn connected(url: &str) -> Result<fred::prelude::Client, crate::StoreError> {
    let options = crate::RedisOptions::new(url);
    let client = options.client()?;
    crate::connect::connect(&client, &options, Duration::from_secs(5)).await?;
    Ok(client)
}

/// A writer over a client connected to `url`.
pub async fn writer(url: &str) -> Result<crate::writer::Writer, crate::StoreError> {
    Ok(crate::writer::Writer::new(connected(url).await?))
}

/// Polls `check` every 20 ms until it holds (true) or `timeout` passes (false).
pub async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn scratch_dir(tag: &str, port: u16) -> io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "veloflux-redis-{tag}-{}-{port}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn not_installed(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::NotFound {
        io::Error::new(
            err.kind(),
            "redis-server not found: install Debian's redis-server package (bash .ci/run does)",
        )
    } else {
        err
    }
}

/// One `redis-server` without persistence, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub async fn start() -> io::Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra `redis-server` arguments (`--requirepass x`…).
    pub async fn start_with(extra: &[&str]) -> io::Result<Self> {
        let port = free_port()?;
        let mut server = Self {
            port,
            dir: scratch_dir("node", port)?,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(not_installed)?;
        self.child = Some(child);
        wait_for_port(self.addr()).await
    }

    /// Plain TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Plain TCP address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) -> io::Result<()> {
        self.signal("STOP")
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) -> io::Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, name: &str) -> io::Result<()> {
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| io::Error::other("server not running"))?;
        let status = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -{name} {pid} failed")))
        }
    }

    /// Starts it again on the same port, empty (nothing was persisted).
    pub async fn restart_empty(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn().await
    }

    /// Runs one command over RESP and returns the raw reply text.
    pub async fn command(&self, args: &[&str]) -> io::Result<String> {
        command(self.addr(), args).await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of `n` masters, no replicas, every slot assigned.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `n` (≥ 3) cluster-enabled servers and joins them with
    /// `redis-cli --cluster create`; waits until the cluster is `ok`.
    pub async fn start(n: usize) -> io::Result<Self> {
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let port = free_port()?;
            let dir = scratch_dir("cluster", port)?;
            let conf = dir.join("nodes.conf").display().to_string();
            let mut node = RedisServer {
                port,
                dir,
                extra: [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-node-timeout",
                    "2000",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
                child: None,
            };
            node.spawn().await?;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(not_installed)?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        for _ in 0..200 {
            let mut ok = true;
            for node in &nodes {
                ok &= node
                    .command(&["CLUSTER", "INFO"])
                    .await?
                    .contains("cluster_state:ok");
            }
            if ok {
                return Ok(Self { nodes });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(io::Error::other("cluster did not reach cluster_state:ok"))
    }

    /// `redis-cluster://first?node=second&node=third…`.
    pub fn url(&self) -> String {
        let mut url = String::from("redis-cluster://");
        for (i, node) in self.nodes.iter().enumerate() {
            if i == 0 {
                url.push_str(&node.addr().to_string());
            } else {
                url.push(if i == 1 { '?' } else { '&' });
                url.push_str("node=");
                url.push_str(&node.addr().to_string());
            }
        }
        url
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

async fn wait_for_port(addr: SocketAddr) -> io::Result<()> {
    let mut last = io::Error::other("never tried");
    for _ in 0..400 {
        let attempt = command(addr, &["PING"]).await.and_then(|reply| {
            if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
                Ok(())
            } else {
                Err(io::Error::other(reply))
            }
        });
        match attempt {
            Ok(()) => return Ok(()),
            Err(err) => last = err,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(io::Error::other(format!(
        "redis-server on {addr} did not start: {last}"
    )))
}

/// Sends one command as a RESP array and returns the reply's raw text.
pub async fn command(addr: SocketAddr, args: &[&str]) -> io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .map_err(|_| io::Error::other("no reply"))??;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if complete(&reply) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Whether `reply` holds one whole RESP value (enough for the replies tests read).
fn complete(reply: &[u8]) -> bool {
    fn value(buf: &[u8]) -> Option<usize> {
        let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
        let head = std::str::from_utf8(&buf[1..line_end]).ok()?;
        let after = line_end + 2;
        match buf.first()? {
            b'+' | b'-' | b':' => Some(after),
            b'$' => {
                let len: i64 = head.parse().ok()?;
                if len < 0 {
                    return Some(after);
                }
                let end = after + usize::try_from(len).ok()? + 2;
                (buf.len() >= end).then_some(end)
            }
            b'*' => {
                let count: i64 = head.parse().ok()?;
                let mut at = after;
                for _ in 0..count.max(0) {
                    at += value(&buf[at..])?;
                }
                Some(at)
            }
            _ => None,
        }
    }
    value(reply).is_some()
}

/// A compiled config for `tenant` serving `hosts` from the static backend
/// `backend` (on a plan that allows static backends), as the operator
/// would compile it.
pub fn tenant_config(
    tenant: &str,
    hosts: &[&str],
    backend: SocketAddr,
) -> Result<TenantConfig, ManifestError> {
    let mut configs = tenant_configs(&[(tenant, hosts, backend)])?;
    configs.pop().ok_or_else(|| ManifestError::Yaml {
        path: "generated.yaml".into(),
        message: format!("tenant {tenant} was not admitted"),
    })
}

/// Compiled configs for many tenants at once (one `resolve`).
pub fn tenant_configs(
    tenants: &[(&str, &[&str], SocketAddr)],
) -> Result<Vec<TenantConfig>, ManifestError> {
    let mut manifests = Manifests::default();
    manifests.add_yaml(
        std::path::Path::new("plan.yaml"),
        "apiVersion: veloflux.io/v1alpha1\nkind: Plan\nmetadata: {name: fleet}\nspec:\n  limits: {requestsPerMinute: 1000000, burst: 100000, maxRoutes: 100, maxBackendsPerRoute: 16, maxDomains: 100}\n  features: {staticBackends: true, customTls: true}\n",
    )?;
    for (tenant, hosts, backend) in tenants {
        let hosts = hosts.join(", ");
        let yaml = format!(
            "apiVersion: veloflux.io/v1alpha1\nkind: Tenant\nmetadata: {{name: {tenant}}}\nspec:\n  planRef: fleet\n  domains: [{hosts}]\n  namespaces: [{tenant}]\n---\napiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: web, namespace: {tenant}}}\nspec:\n  tenantRef: {tenant}\n  hosts: [{hosts}]\n  backends:\n    - {{name: app, address: \"{backend}\"}}\n"
        );
        manifests.add_yaml(std::path::Path::new(&format!("{tenant}.yaml")), &yaml)?;
    }
    Ok(manifests.resolve().configs.into_values().collect())
}
