//! The owner of a client's loopback socket on Windows: `GetExtendedTcpTable`
//! (`TCP_TABLE_OWNER_PID_ALL`) gives each socket's owning process id; that
//! process's token names its account (a SID), compared with the daemon's own.
//!
//! Accounts are SIDs here, not uids. The daemon's own account is served, and so is
//! each `allowed_users` entry — a SID string (`S-1-5-21-…`) or an account name
//! (`reception`, `PC\reception`, resolved with `LookupAccountNameW`): [`allow_account`]
//! keeps its SID and hands the policy a stand-in uid for it ([`LISTED_UID_BASE`] +
//! its index), which [`lookup`] returns for a client of that account.
//! `allowed_groups` does not apply (no groups are read on Windows). The decoding of
//! the table rows is pure and lives in the parent module.
#![allow(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Mutex;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_INSUFFICIENT_BUFFER, HANDLE, HLOCAL, LocalFree, NO_ERROR,
};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_ALL,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Security::Authorization::ConvertStringSidToSidW;
use windows_sys::Win32::Security::{
    EqualSid, GetLengthSid, GetTokenInformation, IsValidSid, LookupAccountNameW, PSID,
    SID_NAME_USE, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::LookupError;
use crate::codec::inet::normalise;
use crate::codec::tcp_table::{TableRow, find_pid};

/// How often the table is fetched again when it grew between the size query and
/// the read.
const TABLE_ATTEMPTS: usize = 4;

/// The first stand-in uid for an `allowed_users` account (far above the uids Unix
/// configurations use, and never the daemon's own, `u32::MAX`).
pub const LISTED_UID_BASE: u32 = 0x8000_0000;

/// The SIDs (their bytes) of the `allowed_users` accounts, in the order their
/// stand-in uids were handed out.
static ALLOWED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Resolves an `allowed_users` entry to its SID and returns the stand-in uid the
/// policy lists for it; the same account always gets the same uid.
pub fn allow_account(entry: &str) -> Result<u32, String> {
    let sid = if entry
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("S-1-"))
    {
        sid_from_string(entry)?
    } else {
        sid_from_name(entry)?
    };
    let mut allowed = ALLOWED.lock().unwrap_or_else(|p| p.into_inner());
    let index = match allowed.iter().position(|s| *s == sid) {
        Some(i) => i,
        None => {
            allowed.push(sid);
            allowed.len() - 1
        }
    };
    u32::try_from(index)
        .ok()
        .and_then(|i| LISTED_UID_BASE.checked_add(i))
        .filter(|uid| *uid != u32::MAX)
        .ok_or_else(|| "too many allowed_users".to_owned())
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The bytes of a valid SID.
fn sid_bytes(sid: PSID) -> Vec<u8> {
    // SAFETY: callers pass a SID that IsValidSid accepted (or the API wrote); its
    // length comes from GetLengthSid and the bytes stay alive for the copy.
    unsafe {
        let len = GetLengthSid(sid) as usize;
        std::slice::from_raw_parts(sid.cast::<u8>(), len).to_vec()
    }
}

fn sid_from_string(entry: &str) -> Result<Vec<u8>, String> {
    let text = wide(entry);
    let mut sid: PSID = std::ptr::null_mut();
    // SAFETY: a NUL-terminated UTF-16 string and a valid out pointer.
    if unsafe { ConvertStringSidToSidW(text.as_ptr(), &mut sid) } == 0 || sid.is_null() {
        return Err(format!(
            "{entry:?} is not a SID ({})",
            std::io::Error::last_os_error()
        ));
    }
    let bytes = sid_bytes(sid);
    // SAFETY: the API allocated `sid` with LocalAlloc; freed once, not used after.
    unsafe { LocalFree(sid as HLOCAL) };
    Ok(bytes)
}

fn sid_from_name(entry: &str) -> Result<Vec<u8>, String> {
    let name = wide(entry);
    let (mut sid_len, mut domain_len, mut kind): (u32, u32, SID_NAME_USE) = (0, 0, 0);
    // SAFETY: a size query: null buffers with zero sizes, valid out pointers.
    unsafe {
        LookupAccountNameW(
            std::ptr::null(),
            name.as_ptr(),
            std::ptr::null_mut(),
            &mut sid_len,
            std::ptr::null_mut(),
            &mut domain_len,
            &mut kind,
        )
    };
    if sid_len == 0 {
        return Err(format!(
            "no account named {entry:?} ({})",
            std::io::Error::last_os_error()
        ));
    }
    // u64 elements: a SID needs 4-byte alignment.
    let mut sid = vec![0u64; (sid_len as usize).div_ceil(8)];
    let mut domain = vec![0u16; domain_len.max(1) as usize];
    // SAFETY: the buffers have the sizes the size query asked for.
    let ok = unsafe {
        LookupAccountNameW(
            std::ptr::null(),
            name.as_ptr(),
            sid.as_mut_ptr().cast(),
            &mut sid_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut kind,
        )
    };
    let psid: PSID = sid.as_mut_ptr().cast();
    // SAFETY: `psid` points into `sid`, written by the API when `ok`.
    if ok == 0 || unsafe { IsValidSid(psid) } == 0 {
        return Err(format!(
            "cannot look up account {entry:?} ({})",
            std::io::Error::last_os_error()
        ));
    }
    Ok(sid_bytes(psid))
}

/// The daemon's own effective uid when the client runs as the daemon's account
/// (what [`crate::server::users::UserPolicy`] admits as its own), the stand-in uid
/// of an `allowed_users` account ([`allow_account`]); otherwise an error naming the
/// owning process. Blocking.
pub fn lookup(client: SocketAddr, server: SocketAddr) -> Result<u32, LookupError> {
    let rows = tcp_rows(matches!(normalise(client), SocketAddr::V6(_)))?;
    let pid = find_pid(rows, client, server).ok_or(LookupError::NotFound { client, server })?;
    // Pid 0 is the idle process: the table knows no owner (Wine says so for sockets
    // it cannot attribute). Never guess.
    if pid == 0 {
        return Err(LookupError::NoProcess { client });
    }
    let own = crate::server::users::effective_uid();
    if pid == std::process::id() {
        return Ok(own);
    }
    let theirs = Token::of_process(pid)?.user()?;
    let ours = Token::current()?.user()?;
    // SAFETY: both buffers hold a TOKEN_USER whose SID pointer points into the same
    // buffer, alive for this call.
    let same = unsafe { EqualSid(sid(&theirs), sid(&ours)) } != 0;
    if same {
        return Ok(own);
    }
    let theirs = sid_bytes(sid(&theirs));
    let allowed = ALLOWED.lock().unwrap_or_else(|p| p.into_inner());
    allowed
        .iter()
        .position(|s| *s == theirs)
        .and_then(|i| u32::try_from(i).ok())
        .and_then(|i| LISTED_UID_BASE.checked_add(i))
        .ok_or(LookupError::ForeignAccount { pid })
}

fn os_error(call: &'static str) -> LookupError {
    LookupError::Os {
        call,
        source: std::io::Error::last_os_error(),
    }
}

/// Every TCP socket of one family with its owner.
fn tcp_rows(v6: bool) -> Result<Vec<TableRow>, LookupError> {
    let family = u32::from(if v6 { AF_INET6 } else { AF_INET });
    let mut size = 0u32;
    // u64 elements: the table's rows need 4-byte alignment, a Vec<u8> promises 1.
    let mut buf: Vec<u64> = Vec::new();
    for _ in 0..TABLE_ATTEMPTS {
        // SAFETY: `buf` has room for `size` bytes (size 0: a size query only).
        let rc = unsafe {
            GetExtendedTcpTable(
                buf.as_mut_ptr().cast(),
                &mut size,
                0,
                family,
                TCP_TABLE_OWNER_PID_ALL,
                0,
            )
        };
        match rc {
            NO_ERROR => return Ok(decode(&buf, size as usize, v6)),
            ERROR_INSUFFICIENT_BUFFER => buf = vec![0u64; (size as usize).div_ceil(8)],
            other => {
                return Err(LookupError::Os {
                    call: "GetExtendedTcpTable",
                    source: std::io::Error::from_raw_os_error(other as i32),
                });
            }
        }
    }
    Err(LookupError::Os {
        call: "GetExtendedTcpTable",
        source: std::io::Error::other("the table kept growing"),
    })
}

/// The rows of a `MIB_TCPTABLE_OWNER_PID` / `MIB_TCP6TABLE_OWNER_PID` of `len`
/// bytes: a DWORD count, then the rows. A count that overruns the buffer is cut
/// to what fits.
fn decode(buf: &[u64], len: usize, v6: bool) -> Vec<TableRow> {
    let len = len.min(buf.len() * 8);
    if len < 4 {
        return Vec::new();
    }
    let base = buf.as_ptr().cast::<u8>();
    // SAFETY: `len >= 4` bytes are initialised; the count is the first DWORD.
    let count = unsafe { base.cast::<u32>().read() } as usize;
    let row_size = if v6 {
        size_of::<MIB_TCP6ROW_OWNER_PID>()
    } else {
        size_of::<MIB_TCPROW_OWNER_PID>()
    };
    let fits = (len - 4) / row_size;
    (0..count.min(fits))
        .map(|i| {
            // SAFETY: row i lies within the first `len` bytes (checked above); rows
            // start at offset 4 and are 4-aligned, like the u64 buffer plus 4.
            unsafe {
                let at = base.add(4 + i * row_size);
                if v6 {
                    let r = at.cast::<MIB_TCP6ROW_OWNER_PID>().read_unaligned();
                    TableRow::v6(
                        (r.ucLocalAddr, r.dwLocalPort),
                        (r.ucRemoteAddr, r.dwRemotePort),
                        r.dwOwningPid,
                    )
                } else {
                    let r = at.cast::<MIB_TCPROW_OWNER_PID>().read_unaligned();
                    TableRow::v4(
                        (r.dwLocalAddr, r.dwLocalPort),
                        (r.dwRemoteAddr, r.dwRemotePort),
                        r.dwOwningPid,
                    )
                }
            }
        })
        .collect()
}

/// A process token, closed when dropped.
struct Token(HANDLE);

impl Token {
    fn current() -> Result<Token, LookupError> {
        // SAFETY: the pseudo-handle of the current process needs no closing.
        Token::open(unsafe { GetCurrentProcess() })
    }

    fn of_process(pid: u32) -> Result<Token, LookupError> {
        // SAFETY: plain call; a null handle is checked below.
        let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if process.is_null() {
            return Err(os_error("OpenProcess"));
        }
        let token = Token::open(process);
        // SAFETY: `process` is a handle we opened.
        unsafe { CloseHandle(process) };
        token
    }

    fn open(process: HANDLE) -> Result<Token, LookupError> {
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: `token` is a valid out pointer.
        if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
            return Err(os_error("OpenProcessToken"));
        }
        Ok(Token(token))
    }

    /// The token's `TOKEN_USER` (the account SID and the buffer it points into).
    fn user(&self) -> Result<Vec<u64>, LookupError> {
        let mut needed = 0u32;
        // SAFETY: a size query with no buffer.
        unsafe { GetTokenInformation(self.0, TokenUser, std::ptr::null_mut(), 0, &mut needed) };
        if needed == 0 {
            return Err(os_error("GetTokenInformation"));
        }
        let mut buf = vec![0u64; (needed as usize).div_ceil(8)];
        // SAFETY: `buf` holds at least `needed` bytes, 8-aligned.
        let ok = unsafe {
            GetTokenInformation(
                self.0,
                TokenUser,
                buf.as_mut_ptr().cast(),
                needed,
                &mut needed,
            )
        };
        if ok == 0 {
            return Err(os_error("GetTokenInformation"));
        }
        Ok(buf)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        // SAFETY: a token handle we opened.
        unsafe { CloseHandle(self.0) };
    }
}

/// The SID inside a `TOKEN_USER` buffer from [`Token::user`].
fn sid(token_user: &[u64]) -> *mut core::ffi::c_void {
    // SAFETY: the buffer starts with a TOKEN_USER written by GetTokenInformation.
    unsafe { (*token_user.as_ptr().cast::<TOKEN_USER>()).User.Sid }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn allowed_accounts_get_one_stand_in_uid_each() {
        // BUILTIN\Administrators, by its well-known SID string.
        let admins = allow_account("S-1-5-32-544").expect("a SID string");
        assert!(admins >= LISTED_UID_BASE && admins != u32::MAX);
        assert_eq!(
            allow_account("s-1-5-32-544"),
            Ok(admins),
            "same SID, same uid"
        );
        assert!(allow_account("S-1-bogus").is_err());
        assert!(allow_account("no-such-account-vb").is_err());
        // This account, by name: a different SID, a different uid.
        let me = std::env::var("USERNAME").expect("USERNAME");
        let mine = allow_account(&me).expect("this account's name resolves");
        assert_ne!(mine, admins);
        assert_eq!(allow_account(&me), Ok(mine));
    }

    /// A real loopback connection of this process: its client end is found in the
    /// table (the row decoding is right against the real API) and is never taken for
    /// another account. Windows attributes it to this process, hence this account;
    /// Wine 8.0 often lists it with pid 0, which must refuse (`NoProcess`), never
    /// admit.
    #[test]
    fn a_connection_of_this_process_is_found_and_never_taken_for_another_account() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = listener.local_addr().expect("addr");
        let stream = TcpStream::connect(server).expect("connect");
        let client = stream.local_addr().expect("client addr");
        let (_accepted, peer) = listener.accept().expect("accept");
        assert_eq!(peer, client);
        match lookup(client, server) {
            Ok(uid) => assert_eq!(uid, crate::server::users::effective_uid()),
            Err(LookupError::NoProcess { client: c }) => assert_eq!(c, client),
            Err(e) => panic!("the client's own socket: {e}"),
        }
        // A port nobody uses has no row at all.
        let unknown = SocketAddr::from(([127, 0, 0, 1], 1));
        assert!(matches!(
            lookup(unknown, server),
            Err(LookupError::NotFound { .. })
        ));
    }
}
