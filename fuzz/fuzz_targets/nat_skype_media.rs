//! Media datagrams between skype peers (text, voice, echo, end, report): checking the tag and
//! decoding arbitrary bytes must never panic, and nothing forged under another key decodes.
#![no_main]

use appnet_nat::skype::media;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = media::session_key("fuzz-offer-password", "fuzz-answer-password");
    let _ = media::call_of(data);
    if let Some(m) = media::decode(&key, data) {
        let call = media::call_of(data).unwrap_or(0);
        assert_eq!(media::decode(&key, &media::encode(&key, call, &m)), Some(m));
    }
});
