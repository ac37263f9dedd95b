//! `amber serve`: host the built-in object classes over HTTP and
//! WebSockets until SIGINT or SIGTERM, then shut down gracefully.

use std::net::SocketAddr;
use std::time::Duration;

use amber::runtime::{Runtime, RuntimeConfig};
use amber::{ClusterConfig, Config, DurabilityLevel, Error, ErrorKind, Store};

pub(crate) struct ServeArgs {
    pub listen: SocketAddr,
    pub workers: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub sync_threads: usize,
    pub cluster: Option<ClusterArgs>,
}

pub(crate) struct ClusterArgs {
    pub host: Option<String>,
    pub advertise: Option<String>,
    pub lease_ttl_ms: u64,
}

/// The system's host name, reduced to the characters a host name may have.
fn default_host() -> String {
    let raw = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(48)
        .collect();
    if name.is_empty() {
        "host".to_owned()
    } else {
        name
    }
}

pub(crate) fn run(mut config: Config, args: ServeArgs) -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let data = config.data_dir.clone();
    // Many objects commit at once under a server's load; more fsyncs in
    // flight lets the file system fold them into fewer journal flushes.
    config.sync_threads = args.sync_threads.max(1);
    // Bind first: in cluster mode the address goes into the lease.
    let std_listener = std::net::TcpListener::bind(args.listen)
        .map_err(|e| Error::new(ErrorKind::Io, format!("listen on {}: {e}", args.listen)))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| Error::new(ErrorKind::Io, format!("listener: {e}")))?;
    let bound = std_listener
        .local_addr()
        .map_err(|e| Error::new(ErrorKind::Io, format!("listener address: {e}")))?;
    if let Some(c) = &args.cluster {
        let mut cc = ClusterConfig::new(
            c.host.clone().unwrap_or_else(default_host),
            c.advertise.clone().unwrap_or_else(|| bound.to_string()),
        );
        cc.lease_ttl = Duration::from_millis(c.lease_ttl_ms);
        config.cluster = Some(cc);
        config.durability = DurabilityLevel::Remote;
    }
    let store = Store::open(config)?;
    if let Some(c) = store.cluster() {
        eprintln!(
            "amber: cluster host {} (lease {} ms), advertising {}",
            c.incarnation(),
            c.lease_ttl().as_millis(),
            c.advertise()
        );
    }
    let mut cfg = RuntimeConfig::default();
    if let Some(w) = args.workers {
        cfg.workers = w;
    }
    if let Some(s) = args.idle_timeout_secs {
        cfg.idle_timeout = Duration::from_secs(s);
    }
    let rt = amber::server::with_builtin_classes(Runtime::builder(store))
        .config(cfg)
        .start()?;
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("amber-http")
        .build()
        .map_err(|e| Error::new(ErrorKind::Io, format!("start tokio: {e}")))?;
    tokio_rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| Error::new(ErrorKind::Io, format!("listen on {}: {e}", args.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::new(ErrorKind::Io, format!("listener address: {e}")))?;
        eprintln!(
            "amber: serving {} on http://{addr} (try: curl -X POST http://{addr}/counter/demo/increment)",
            data.display(),
        );
        amber::server::serve(rt, listener, amber::server::shutdown_signal()).await
    })
}
