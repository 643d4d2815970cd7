//! Set-up shared by the supernode integration tests: three SNs joined into one overlay.

use appnet_nat::config::SupernodeConfig;
use appnet_nat::skype::Supernode;
use appnet_netkit::harness::{self, TempDir};

/// Three supernodes on loopback sharing an overlay secret (in a temporary directory named
/// after `test`), B and C joining through A; `tweak` adjusts each SN's config. The directory
/// is returned so it lives as long as the SNs.
pub async fn three_sns(test: &str, tweak: impl Fn(&mut SupernodeConfig)) -> (TempDir, [harness::Running; 3]) {
    let dir = TempDir::new(test);
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("the overlay secret of the {test} test\n")).unwrap();
    let mut sns = Vec::with_capacity(3);
    for _ in 0..3 {
        let mut config = SupernodeConfig {
            listen: harness::any_loopback(),
            overlay_secret_file: Some(secret.clone()),
            join: sns.first().map(|a: &harness::Running| vec![a.addr()]).unwrap_or_default(),
            ..SupernodeConfig::default()
        };
        tweak(&mut config);
        sns.push(harness::start(Supernode::bind(config).await.unwrap()));
    }
    let Ok(sns) = <[harness::Running; 3]>::try_from(sns) else { unreachable!("three were started") };
    (dir, sns)
}
