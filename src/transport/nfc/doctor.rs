//! NFC checks for `vitale-bridge doctor`: devices libnfc can open, and the Linux NFC
//! stack (`pn533_usb`, `pn533`, `nfc` kernel modules) holding a reader that libnfc
//! then cannot claim.

use super::NfcOptions;
use crate::transport::{Check, CheckStatus};

/// Kernel modules that bind PN533-family readers (and ACR122U, SCL3711) on Linux.
const KERNEL_MODULES: [&str; 3] = ["pn533_usb", "pn533", "nfc"];
/// Where the USB driver lists the interfaces it is bound to.
const PN533_USB_DRIVER: &str = "/sys/bus/usb/drivers/pn533_usb";

/// NFC checks for `vitale-bridge doctor` (devices, kernel modules holding them).
pub fn diagnose(opts: &NfcOptions) -> Vec<Check> {
    let mut checks = Vec::new();
    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    checks.extend(kernel_module_check(&modules, &bound_interfaces()));
    if opts.devices.is_empty() {
        checks.push(match super::list_devices() {
            Ok(found) if !found.is_empty() => Check {
                status: CheckStatus::Ok,
                what: format!("NFC devices found by USB scan: {}", found.join(", ")),
                fix: None,
            },
            Ok(_) => Check {
                status: CheckStatus::Warn,
                what: "no NFC device found by libnfc's USB scan".into(),
                fix: Some(
                    "plug a PN533/ACR122U/SCL3711, or name a serial PN532 with --nfc pn532_uart:/dev/ttyUSB0 (or nfc.devices)".into(),
                ),
            },
            Err(e) => Check {
                status: CheckStatus::Fail,
                what: format!("libnfc: {e}"),
                fix: None,
            },
        });
    }
    for connstring in &opts.devices {
        checks.push(open_check(connstring));
    }
    checks
}

fn open_check(connstring: &str) -> Check {
    let opened = nfc1::Context::new().and_then(|mut ctx| {
        let device = ctx.open_with_connstring(connstring)?;
        drop(device);
        Ok(())
    });
    match opened {
        Ok(()) => Check {
            status: CheckStatus::Ok,
            what: format!("NFC device {connstring} opens"),
            fix: None,
        },
        Err(e) => Check {
            status: CheckStatus::Fail,
            what: format!("NFC device {connstring} does not open: {e}"),
            fix: Some(
                "check the connstring and the device's permissions (install udev/*.rules, see docs/hardware-nfc.md); a running daemon holds the device too".into(),
            ),
        },
    }
}

fn bound_interfaces() -> Vec<String> {
    std::fs::read_dir(PN533_USB_DRIVER)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                // Bound interfaces look like `1-1.2:1.0`; skip bind/unbind/module/uevent.
                .filter(|name| name.contains(':'))
                .collect()
        })
        .unwrap_or_default()
}

/// Judges `/proc/modules` and the interfaces `pn533_usb` is bound to.
pub fn kernel_module_check(proc_modules: &str, bound: &[String]) -> Option<Check> {
    let loaded: Vec<&str> = proc_modules
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| KERNEL_MODULES.contains(name))
        .collect();
    let fix = "install udev/blacklist-pn533.conf as /etc/modprobe.d/vitale-bridge-nfc.conf, then `modprobe -r pn533_usb pn533 nfc` (or unplug and replug the reader)";
    if !bound.is_empty() {
        return Some(Check {
            status: CheckStatus::Fail,
            what: format!(
                "kernel module pn533_usb holds NFC device(s) {}: libnfc cannot open them",
                bound.join(", ")
            ),
            fix: Some(fix.into()),
        });
    }
    if loaded.is_empty() {
        return Some(Check {
            status: CheckStatus::Ok,
            what: "no kernel NFC module (pn533_usb, pn533, nfc) is loaded".into(),
            fix: None,
        });
    }
    Some(Check {
        status: CheckStatus::Warn,
        what: format!(
            "kernel NFC module(s) loaded: {} (they grab PN533/ACR122U/SCL3711 readers when plugged)",
            loaded.join(", ")
        ),
        fix: Some(fix.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_a_device_held_by_pn533_usb() {
        let modules = "pn533_usb 20480 0 - Live 0x0\npn533 45056 1 pn533_usb, Live 0x0\nnfc 131072 1 pn533, Live 0x0\n";
        let check = kernel_module_check(modules, &["1-1:1.0".into()]).expect("check");
        assert_eq!(check.status, CheckStatus::Fail);
        assert!(check.what.contains("1-1:1.0"), "{}", check.what);
        let check = kernel_module_check(modules, &[]).expect("check");
        assert_eq!(check.status, CheckStatus::Warn);
        let check = kernel_module_check("ext4 1 0 - Live 0x0\n", &[]).expect("check");
        assert_eq!(check.status, CheckStatus::Ok);
        // A module whose name merely contains "nfc" is not the NFC stack.
        let check = kernel_module_check("nfc_foo 1 0 - Live 0x0\n", &[]).expect("check");
        assert_eq!(check.status, CheckStatus::Ok);
    }
}
