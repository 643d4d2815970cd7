//! Telnet sequences on the control connection (RFC 959 §4.1.3, RFC 854): clients send
//! "Interrupt Process" (IAC IP) and "Synch" (IAC DM, as TCP urgent data) before ABOR, and a
//! literal 0xFF byte in a path arrives doubled (IAC IAC). The command parser sees none of them.

/// Interpret As Command.
const IAC: u8 = 0xff;
/// Option negotiation verbs that carry one more byte.
const WILL: u8 = 0xfb;
const WONT: u8 = 0xfc;
const DO: u8 = 0xfd;
const DONT: u8 = 0xfe;

/// The line with Telnet command sequences removed and IAC IAC reduced to one 0xFF byte.
pub fn strip_telnet(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b != IAC {
            out.push(b);
            i += 1;
            continue;
        }
        match line.get(i + 1) {
            Some(&IAC) => {
                out.push(IAC);
                i += 2;
            }
            Some(&(WILL | WONT | DO | DONT)) => i += 3,
            // A Telnet command (IP, DM, ...): both bytes go.
            Some(&c) if c >= 0xf0 => i += 2,
            // A lone IAC (its DM went out of band as urgent data): only the IAC goes.
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abor_after_interrupt_and_synch_is_plain_abor() {
        assert_eq!(strip_telnet(b"\xff\xf4\xff\xf2ABOR"), b"ABOR");
        // lftp's Synch: the DM goes as urgent data, so the stream holds IAC IP IAC then ABOR.
        assert_eq!(strip_telnet(b"\xff\xf4\xffABOR"), b"ABOR");
    }

    #[test]
    fn doubled_iac_is_a_data_byte_and_negotiation_is_dropped() {
        assert_eq!(strip_telnet(b"RETR a\xff\xffb"), b"RETR a\xffb");
        assert_eq!(strip_telnet(b"\xff\xfb\x01NOOP"), b"NOOP");
        assert_eq!(strip_telnet(b"NOOP\xff"), b"NOOP");
        assert_eq!(strip_telnet(b"\xff\xfd"), b"");
    }
}
