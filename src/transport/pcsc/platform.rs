//! What the PC/SC service is called, and how to fix it, on each OS: pcsc-lite's
//! pcscd on Linux, the Smart Card service (SCardSvr) on Windows. The monitor's
//! `service.changed` details and `doctor`'s checks take their words from here, so a
//! receptionist's admin reads Windows fixes on Windows.

/// Names and fixes for one OS.
pub struct Wording {
    /// The service, as a sentence subject ("pcscd").
    pub service: &'static str,
    /// How to start the service when it is not running.
    pub start_fix: &'static str,
    /// What to do when no reader is listed.
    pub no_reader_fix: &'static str,
    /// What to do when listing readers fails.
    pub list_failed_fix: &'static str,
}

/// Windows: SCardSvr is demand-started. On Windows 8 and later it stops when the
/// last reader is unplugged and starts again when one is plugged in, so "not
/// running" with no reader attached is normal; the monitor waits for it.
#[cfg(windows)]
pub const WORDING: Wording = Wording {
    service: "the Smart Card service (SCardSvr)",
    start_fix: "plug the reader in: Windows starts the Smart Card service when a reader arrives. If it stays stopped, as an administrator: `sc config SCardSvr start= demand` then `sc start SCardSvr` (services.msc: Smart Card, Startup type Manual); the System event log says why it stopped",
    no_reader_fix: "plug the reader in; Device Manager should list it under \"Smart card readers\". Most USB readers work with Windows' own CCID driver (\"Microsoft Usbccid Smartcard Reader\"), others need the maker's driver",
    list_failed_fix: "restart the Smart Card service (services.msc, or `sc stop SCardSvr` then `sc start SCardSvr` as an administrator) and check the System event log",
};

/// Unix: pcsc-lite's daemon.
#[cfg(not(windows))]
pub const WORDING: Wording = Wording {
    service: "pcscd",
    start_fix: "start it: systemctl enable --now pcscd.socket (without systemd: pcscd)",
    no_reader_fix: "plug the reader in; check `pcsc_scan`; USB readers need the CCID driver (apt-get install libccid)",
    list_failed_fix: "restart pcscd and check its log (pcscd --foreground --debug)",
};
