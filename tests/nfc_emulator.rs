//! The PN532 emulator as libnfc's own tools see it.

mod nfc_support;

use nfc_support::Emulator;

#[test]
fn nfc_list_accepts_the_emulator() {
    let nfc_list = require_nfc_list();
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(dir.path(), &["--tapped"]);
    let out = std::process::Command::new(nfc_list)
        .env("LIBNFC_DEFAULT_DEVICE", emu.connstring())
        .output()
        .expect("run nfc-list");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("NFC device: user defined default device opened"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 ISO14443A passive target(s) found"),
        "{stdout}"
    );
    assert!(stdout.contains("SAK (SEL_RES): 20"), "{stdout}");
}

fn require_nfc_list() -> std::path::PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = std::path::Path::new(dir).join("nfc-list");
        if p.exists() {
            return p;
        }
    }
    panic!("`nfc-list` is required for this test: apt-get install -y libnfc-bin");
}
