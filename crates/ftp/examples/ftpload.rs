//! An FTP session load generator for bench/ftp.sh: `SESSIONS` concurrent clients, each running
//! whole sessions back to back for `SECS` seconds — connect, USER anonymous / PASS, TYPE I,
//! EPSV + LIST, EPSV + RETR of `FILE` (its size must be `SIZE`), QUIT — exactly what a
//! Python asyncio client did before, but on one tokio thread, so one CPU can drive a server
//! far past what the Python loop could (which capped the vsftpd figure). appnet and vsftpd are
//! measured with this very client.
//!
//! The clients start spread evenly over the first `RAMP_MS` (default 1000), not all in the
//! same instant: 200 SYNs at once overflow a listen backlog such as vsftpd's 32, and the
//! connections lost in that one burst would each idle a client for the whole 30 s limit. The
//! measuring window of `SECS` begins when the last client has started.
//!
//! A session counts when it ends (221) inside the window; one that fails (a refused or reset
//! connection, an unexpected reply, a short file, 30 s without finishing), during the ramp
//! or the window, counts as failed, whatever the server. Prints
//! `SESSIONS_PER_SEC P50_MS P99_MS FAILED` on one line, and the commonest failure reasons on
//! stderr.
//!
//! usage: ftpload ADDR [SESSIONS] [SECS] [FILE] [SIZE] [RAMP_MS]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// One session's limit: longer counts as failed.
const SESSION_LIMIT: Duration = Duration::from_secs(30);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(addr) = args.first().and_then(|a| a.parse::<SocketAddr>().ok()) else {
        eprintln!("usage: ftpload ADDR [SESSIONS] [SECS] [FILE] [SIZE]");
        std::process::exit(2);
    };
    let num = |i: usize, d: u64| args.get(i).map_or(d, |s| s.parse().unwrap_or(d));
    let (sessions, secs) = (num(1, 200), num(2, 10));
    let file = args.get(3).cloned().unwrap_or_else(|| "small.bin".into());
    let size = num(4, 4096);
    let ramp = Duration::from_millis(num(5, 1000));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let (mut times, failed) = rt.block_on(async move {
        let start = Instant::now();
        let window = (start + ramp, start + ramp + Duration::from_secs(secs));
        let mut tasks = Vec::new();
        for i in 0..sessions {
            let file = file.clone();
            let begin = start + ramp.mul_f64(i as f64 / sessions.max(1) as f64);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(begin.into()).await;
                worker(addr, window, file, size).await
            }));
        }
        let mut times = Vec::new();
        let mut failed: HashMap<String, u64> = HashMap::new();
        for t in tasks {
            if let Ok((t, f)) = t.await {
                times.extend(t);
                for (k, v) in f {
                    *failed.entry(k).or_default() += v;
                }
            }
        }
        (times, failed)
    });
    times.sort_unstable();
    let pct = |p: f64| {
        if times.is_empty() {
            f64::NAN
        } else {
            let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
            times[i].as_secs_f64() * 1000.0
        }
    };
    let mut reasons: Vec<_> = failed.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1));
    for (why, n) in reasons.iter().take(3) {
        eprintln!("  {n} sessions failed: {why}");
    }
    let nfailed: u64 = failed.values().sum();
    println!("{:.0} {:.1} {:.1} {}", times.len() as f64 / secs as f64, pct(0.5), pct(0.99), nfailed);
}

/// Runs sessions until the window's end: the times of those that ended inside the window,
/// and the failures by reason.
async fn worker(
    addr: SocketAddr,
    (from, deadline): (Instant, Instant),
    file: String,
    size: u64,
) -> (Vec<Duration>, HashMap<String, u64>) {
    let mut times = Vec::new();
    let mut failed = HashMap::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        match tokio::time::timeout(SESSION_LIMIT, session(addr, &file, size)).await {
            Ok(Ok(())) => {
                let done = Instant::now();
                if done >= from && done <= deadline {
                    times.push(done - t);
                }
            }
            Ok(Err(e)) => *failed.entry(e).or_insert(0) += 1,
            Err(_) => *failed.entry("no end within 30 s".to_string()).or_insert(0) += 1,
        }
    }
    (times, failed)
}

/// The control connection.
struct Control {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    line: Vec<u8>,
}

impl Control {
    /// Reads one reply (multi-line replies to their last line): its code.
    async fn reply(&mut self) -> Result<u16, String> {
        let code = self.read_line().await?;
        if self.line.get(3) == Some(&b'-') {
            loop {
                if self.read_line().await? == code && self.line.get(3) == Some(&b' ') {
                    break;
                }
            }
        }
        Ok(code)
    }

    async fn read_line(&mut self) -> Result<u16, String> {
        self.line.clear();
        let n = self.r.read_until(b'\n', &mut self.line).await.map_err(|e| kind(&e))?;
        if n < 4 {
            return Err("control connection closed".into());
        }
        let code = std::str::from_utf8(&self.line[..3]).ok().and_then(|s| s.parse().ok());
        code.ok_or_else(|| "a reply without a code".into())
    }

    /// Sends a command and checks the reply's code.
    async fn cmd(&mut self, text: &str, want: &[u16]) -> Result<u16, String> {
        self.w.write_all(format!("{text}\r\n").as_bytes()).await.map_err(|e| kind(&e))?;
        let code = self.reply().await?;
        if want.contains(&code) {
            Ok(code)
        } else {
            let verb = text.split(' ').next().unwrap_or(text);
            Err(format!("{verb}: {}", String::from_utf8_lossy(&self.line).trim_end()))
        }
    }

    /// EPSV, the data connection, `command`, the data to its end, 226: the bytes received.
    async fn transfer(&mut self, ip: std::net::IpAddr, command: &str) -> Result<u64, String> {
        self.cmd("EPSV", &[229]).await?;
        let text = String::from_utf8_lossy(&self.line).into_owned();
        let port: u16 = text
            .split('(')
            .nth(1)
            .and_then(|s| s.split('|').nth(3))
            .and_then(|p| p.parse().ok())
            .ok_or("EPSV: no port in the reply")?;
        let mut data = TcpStream::connect((ip, port)).await.map_err(|e| format!("data {}", kind(&e)))?;
        self.cmd(command, &[125, 150]).await?;
        let mut buf = [0u8; 16384];
        let mut n = 0u64;
        loop {
            match data.read(&mut buf).await {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) => return Err(format!("data {}", kind(&e))),
            }
        }
        drop(data);
        let code = self.reply().await?;
        if code != 226 {
            return Err(format!("{command}: {}", String::from_utf8_lossy(&self.line).trim_end()));
        }
        Ok(n)
    }
}

async fn session(addr: SocketAddr, file: &str, size: u64) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect {}", kind(&e)))?;
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut c = Control { r: BufReader::new(r), w, line: Vec::with_capacity(256) };
    let greeting = c.reply().await?;
    if greeting != 220 {
        return Err(format!("greeting: {}", String::from_utf8_lossy(&c.line).trim_end()));
    }
    if c.cmd("USER anonymous", &[230, 331]).await? == 331 {
        c.cmd("PASS bench@", &[230]).await?;
    }
    c.cmd("TYPE I", &[200]).await?;
    c.transfer(addr.ip(), "LIST").await?;
    let got = c.transfer(addr.ip(), &format!("RETR {file}")).await?;
    if got != size {
        return Err(format!("RETR: {got} bytes, not {size}"));
    }
    c.cmd("QUIT", &[221]).await?;
    Ok(())
}

fn kind(e: &std::io::Error) -> String {
    format!("{:?}", e.kind())
}
