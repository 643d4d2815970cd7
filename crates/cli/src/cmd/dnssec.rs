//! `appnet dns keygen | ds | sign`: offline DNSSEC key and zone tools (like BIND's
//! dnssec-keygen, dnssec-dsfromkey and dnssec-signzone), on appnet_dns::wire::dnssec.

use anyhow::{Context as _, bail};
use appnet_dns::config::{ZoneSource, zone_name_for};
use appnet_dns::wire::dnssec::{self, Algorithm, SignOptions};
use appnet_dns::wire::name::{from_text, to_lower};
use appnet_dns::wire::update::UpdateRr;
use appnet_dns::wire::zonefile::{self, record_text};
use appnet_dns::zone::{Severity, check};
use clap::Args;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Flags for `dns keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The zone the key is for.
    zone: String,
    /// ecdsap256sha256 (13) or ed25519 (15).
    #[arg(long, short = 'a', default_value = "ecdsap256sha256")]
    algorithm: String,
    /// Make a key-signing key (flags 257, signs the DNSKEY RRset; its DS goes to the parent).
    #[arg(long)]
    ksk: bool,
    /// Directory for the K<zone>+<alg>+<tag>.key/.private files (created if missing).
    #[arg(long, short = 'K', default_value = ".")]
    keys: PathBuf,
}

/// Flags for `dns ds`.
#[derive(Args, Debug)]
pub struct DsArgs {
    /// A K*.key file (the DNSKEY line in BIND's format).
    keyfile: PathBuf,
}

/// Flags for `dns sign`.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// The unsigned (or previously signed) zone file.
    file: PathBuf,
    /// Directory with the zone's keys (and child zones' keys, for their DS records).
    #[arg(long, short = 'K', default_value = ".")]
    keys: PathBuf,
    /// Where to write the signed zone [default: FILE.signed].
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// The zone's name [default: the file's $ORIGIN, else its file name].
    #[arg(long)]
    origin: Option<String>,
    /// Use NSEC3 (RFC 9276: SHA-1, 0 iterations, no salt) instead of NSEC.
    #[arg(long)]
    nsec3: bool,
    /// Signature validity from now (s, m, h, d, w suffixes).
    #[arg(long, default_value = "30d")]
    expire: String,
}

/// Reads `30d`, `12h`, `90m`, `3600` (seconds), `2w`.
pub fn parse_duration_secs(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        Some('d') => (&t[..t.len() - 1], 86_400),
        Some('w') => (&t[..t.len() - 1], 604_800),
        _ => (t, 1),
    };
    let n: u64 = num.parse().with_context(|| format!("bad duration {text:?} (like 30d, 12h, 3600)"))?;
    n.checked_mul(mult).with_context(|| format!("duration {text:?} too large"))
}

/// Writes `data` to `path` crash-safely (temp, fsync, link) without ever replacing or
/// following an existing file or symlink there; the file gets `mode`.
fn create_new_file(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|f| f.to_str()).unwrap_or("key"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let res = f.write_all(data).and_then(|()| f.sync_all()).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    res.with_context(|| format!("cannot write {} (it must not exist yet)", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `dns keygen`: one key per call; prints the file stem like dnssec-keygen.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let alg: Algorithm = args.algorithm.parse()?;
    let zone = to_lower(&from_text(&args.zone).map_err(anyhow::Error::msg)?);
    std::fs::create_dir_all(&args.keys).with_context(|| format!("cannot create {}", args.keys.display()))?;
    let key = dnssec::generate_key(&zone, alg, args.ksk, appnet_dns::clock::unix_now())?;
    let private = args.keys.join(format!("{}.private", key.stem));
    let public = args.keys.join(format!("{}.key", key.stem));
    create_new_file(&private, key.private.as_bytes(), 0o600)?;
    create_new_file(&public, key.public.as_bytes(), 0o644)?;
    println!("{}", key.stem);
    Ok(())
}

/// `dns ds`: the DS record (SHA-256) for a key file, for the parent zone.
pub fn ds(args: DsArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.keyfile)
        .with_context(|| format!("cannot read {}", args.keyfile.display()))?;
    println!("{}", dnssec::ds_text(&text)?);
    Ok(())
}

/// `dns sign`: signs a zone file offline with the keys in a directory.
pub fn sign(args: SignArgs) -> anyhow::Result<()> {
    let source = ZoneSource { name: args.origin.clone(), file: args.file.clone() };
    let origin = zone_name_for(&source).map_err(anyhow::Error::msg)?;
    let apex = to_lower(&from_text(&origin).map_err(anyhow::Error::msg)?);
    let records = zonefile::read_file(&args.file, &apex)?;
    let problems = check(&apex, &records);
    for p in problems.iter().filter(|p| p.severity == Severity::Error) {
        eprintln!("{p}");
    }
    if problems.iter().any(|p| p.severity == Severity::Error) {
        bail!("zone {origin}: not signed due to errors");
    }
    let keys = dnssec::load_keys_dir(&args.keys)?;
    let now = appnet_dns::clock::unix_now();
    let expire = parse_duration_secs(&args.expire)?;
    let inception = u32::try_from(now.saturating_sub(3600)).unwrap_or(u32::MAX);
    let expiration = u32::try_from(now.saturating_add(expire)).unwrap_or(u32::MAX);
    let opts = SignOptions { nsec3: args.nsec3, inception, expiration };
    let signed = dnssec::sign_zone(&apex, &records, &keys, opts)?;
    let mut text = format!("; signed by appnet dns sign, {} records\n", signed.len());
    // The SOA first (zone files start with it), then the signer's canonical order.
    let soa_first =
        signed.iter().filter(|r| r.rtype == appnet_dns::wire::rrtype::code::SOA && r.owner == apex);
    let rest = signed.iter().filter(|r| !(r.rtype == appnet_dns::wire::rrtype::code::SOA && r.owner == apex));
    for r in soa_first.chain(rest) {
        let line = match r.rtype {
            appnet_dns::wire::rrtype::code::RRSIG => dnssec::rrsig_text(&r.owner, r.ttl, &r.rdata),
            _ => None,
        };
        text.push_str(&line.unwrap_or_else(|| record_text(&r.owner, r.rtype, r.ttl, &r.rdata)));
        text.push('\n');
    }
    let out = args.output.clone().unwrap_or_else(|| {
        let mut p = args.file.clone().into_os_string();
        p.push(".signed");
        PathBuf::from(p)
    });
    appnet_netkit::files::write_atomic(&out, text.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("{}", out.display());
    Ok(())
}

/// Flags for `dns update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The primary server, ADDR[:PORT] (port 53 by default).
    #[arg(long, value_name = "ADDR")]
    server: String,
    /// TSIG key file (tsig-keygen / `key "NAME" { algorithm ...; secret "..."; };`).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The zone to update.
    #[arg(long)]
    zone: String,
    /// A prerequisite: `nxdomain NAME`, `yxdomain NAME`, `nxrrset NAME TYPE`,
    /// `yxrrset NAME TYPE [DATA]` (repeatable).
    #[arg(long = "prereq", value_name = "COND")]
    prereqs: Vec<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    /// Operations: `add NAME [TTL] TYPE DATA...`, `delete NAME [TYPE [DATA...]]`, several in a
    /// row (each starts with add or delete).
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    ops: Vec<String>,
}

fn abs_name(text: &str) -> anyhow::Result<appnet_dns::wire::name::NameBuf> {
    let t = if text.ends_with('.') { text.to_string() } else { format!("{text}.") };
    Ok(to_lower(&from_text(&t).map_err(anyhow::Error::msg)?))
}

/// The wire rdata of `TYPE DATA...` (zone-file syntax, absolute names).
fn rdata_of(rtype: &str, data: &[String]) -> anyhow::Result<(u16, Vec<u8>)> {
    let fixed: Vec<String> = data.iter().map(|d| d.to_string()).collect();
    let line = format!("x. 0 IN {rtype} {}\n", fixed.join(" "));
    let recs =
        zonefile::parse_text(&line, "update", appnet_dns::wire::name::ROOT, &zonefile::Includes::Forbidden)
            .map_err(|e| anyhow::anyhow!("bad record data {:?}: {}", fixed.join(" "), e.reason))?;
    let r = recs.into_iter().next().context("no record data")?;
    Ok((r.rtype, r.rdata))
}

fn type_code(text: &str) -> anyhow::Result<u16> {
    appnet_dns::wire::rrtype::type_from_text(text).map_err(anyhow::Error::msg)
}

/// Parses the operations into RFC 2136 update records.
fn parse_ops(ops: &[String]) -> anyhow::Result<Vec<UpdateRr>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ops.len() {
        let verb = ops[i].to_ascii_lowercase();
        let end = (i + 1..ops.len())
            .find(|&j| matches!(ops[j].to_ascii_lowercase().as_str(), "add" | "delete"))
            .unwrap_or(ops.len());
        let args = &ops[i + 1..end];
        match (verb.as_str(), args) {
            ("add", [name, rest @ ..]) if rest.len() >= 2 => {
                let (ttl, rest) = match rest[0].parse::<u32>() {
                    Ok(t) if rest.len() >= 3 => (t, &rest[1..]),
                    _ => (3600, rest),
                };
                let (rtype, rdata) = rdata_of(&rest[0], &rest[1..])?;
                out.push(UpdateRr { name: abs_name(name)?, rtype, class: 1, ttl, rdata });
            }
            ("delete", [name]) => {
                out.push(UpdateRr { name: abs_name(name)?, rtype: 255, class: 255, ttl: 0, rdata: vec![] })
            }
            ("delete", [name, t]) => out.push(UpdateRr {
                name: abs_name(name)?,
                rtype: type_code(t)?,
                class: 255,
                ttl: 0,
                rdata: vec![],
            }),
            ("delete", [name, t, data @ ..]) => {
                let (rtype, rdata) = rdata_of(t, data)?;
                out.push(UpdateRr { name: abs_name(name)?, rtype, class: 254, ttl: 0, rdata });
            }
            _ => bail!(
                "cannot read {:?}: want add NAME [TTL] TYPE DATA or delete NAME [TYPE [DATA]]",
                ops[i..end].join(" ")
            ),
        }
        i = end;
    }
    Ok(out)
}

fn parse_prereq(text: &str) -> anyhow::Result<UpdateRr> {
    let w: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    let rr = |name: &str, rtype: u16, class: u16, rdata: Vec<u8>| -> anyhow::Result<UpdateRr> {
        Ok(UpdateRr { name: abs_name(name)?, rtype, class, ttl: 0, rdata })
    };
    match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["nxdomain", n] => rr(n, 255, 254, vec![]),
        ["yxdomain", n] => rr(n, 255, 255, vec![]),
        ["nxrrset", n, t] => rr(n, type_code(t)?, 254, vec![]),
        ["yxrrset", n, t] => rr(n, type_code(t)?, 255, vec![]),
        ["yxrrset", n, t, ..] => {
            let (rtype, rdata) = rdata_of(t, &w[3..])?;
            rr(n, rtype, 1, rdata)
        }
        _ => bail!(
            "--prereq {text:?}: want nxdomain NAME, yxdomain NAME, nxrrset NAME TYPE or yxrrset NAME TYPE [DATA]"
        ),
    }
}

/// `dns update`: one RFC 2136 UPDATE, like nsupdate; fails unless the server says NOERROR.
pub async fn update(args: UpdateArgs) -> anyhow::Result<()> {
    let server = appnet_dns::config::server_addr(&args.server).map_err(anyhow::Error::msg)?;
    let key = match &args.key {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let keys = appnet_dns::wire::tsig::parse_key_file(&text).map_err(anyhow::Error::msg)?;
            Some(std::sync::Arc::new(keys.into_iter().next().context("no key in the key file")?))
        }
        None => None,
    };
    let zone = abs_name(&args.zone)?;
    let prereqs = args.prereqs.iter().map(|p| parse_prereq(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let updates = parse_ops(&args.ops)?;
    let packet = appnet_dns::wire::update::build(rand_id(), &zone, &prereqs, &updates);
    let rc = appnet_dns::client::update(
        server,
        packet,
        key.as_ref(),
        std::time::Duration::from_secs(args.timeout),
    )
    .await?;
    if rc != 0 {
        let name = match rc {
            6 => "YXDOMAIN".to_string(),
            7 => "YXRRSET".to_string(),
            8 => "NXRRSET".to_string(),
            9 => "NOTAUTH".to_string(),
            10 => "NOTZONE".to_string(),
            other => appnet_dns::client::rcode_name(other),
        };
        bail!("update failed: {name}");
    }
    println!("update accepted by {server}");
    Ok(())
}

fn rand_id() -> u16 {
    (appnet_dns::clock::unix_now() as u16) ^ (std::process::id() as u16).rotate_left(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration_secs("3600").unwrap(), 3600);
        assert_eq!(parse_duration_secs("2w").unwrap(), 1_209_600);
        assert!(parse_duration_secs("d").is_err());
        assert!(parse_duration_secs("99999999999999999999w").is_err());
    }

    #[test]
    fn update_operations_like_nsupdate() {
        let ops: Vec<String> = "add networkutopia.com NS dns1.networkutopia.com add dns1.networkutopia.com 300 A 212.212.212.1 delete old.com A delete gone.com"
            .split(' ')
            .map(str::to_string)
            .collect();
        let rrs = parse_ops(&ops).unwrap();
        assert_eq!(rrs.len(), 4);
        assert_eq!((rrs[0].rtype, rrs[0].class, rrs[0].ttl), (2, 1, 3600));
        assert_eq!((rrs[1].rtype, rrs[1].ttl, rrs[1].rdata.clone()), (1, 300, vec![212, 212, 212, 1]));
        assert_eq!((rrs[2].rtype, rrs[2].class), (1, 255));
        assert_eq!((rrs[3].rtype, rrs[3].class), (255, 255));
        assert!(parse_ops(&["add".into(), "x.com".into()]).is_err());
        assert!(parse_ops(&["frob".into()]).is_err());
        assert_eq!(parse_prereq("nxdomain a.com").unwrap().class, 254);
        assert!(parse_prereq("maybe a.com").is_err());
    }

    #[test]
    fn key_files_are_new_0600_and_never_replace_or_follow() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("appnet-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("K.private");
        create_new_file(&p, b"secret", 0o600).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(create_new_file(&p, b"other", 0o600).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
        let target = dir.join("victim");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.join("L.private");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_new_file(&link, b"x", 0o600).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
