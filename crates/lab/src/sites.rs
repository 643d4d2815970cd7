//! The lab's web content, generated: a home page per host naming the host and its address, the
//! textbook's pages (www.someschool.edu's `someDepartment/home.index` with its ten JPEG images),
//! written under the lab directory where anyone can look at them.

use crate::topology::WebSpec;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Width and height of the generated images: big enough (about 10 KB each) that fetching ten
/// of them is measurable, as the textbook's RTT arithmetic needs.
const IMAGE_SIZE: (u16, u16) = (320, 240);

/// Writes the site of `web` under `root` (one directory per host address) and returns it.
/// `cdn_url` is where the site's CDN image is published (`http://a128.g.akamai.net:8080`).
pub fn write_site(web: &WebSpec, root: &Path, cdn_url: Option<&str>) -> std::io::Result<PathBuf> {
    let dir = root.join(web.addr.to_string());
    std::fs::create_dir_all(&dir)?;
    let mut home = format!(
        "<!doctype html>\n<html><head><title>{name}</title></head>\n<body>\n<h1>{name}</h1>\n\
         <p>Served by appnet on {addr} in the appnet lab.</p>\n",
        name = web.name,
        addr = web.addr
    );
    if let Some(page) = &web.page {
        let _ = writeln!(home, "<p><a href=\"/{page}\">{page}</a></p>");
        write_page(web, &dir, page, cdn_url)?;
    }
    home.push_str("</body></html>\n");
    std::fs::write(dir.join("index.html"), home)?;
    Ok(dir)
}

fn write_page(web: &WebSpec, dir: &Path, page: &str, cdn_url: Option<&str>) -> std::io::Result<()> {
    let path = dir.join(page);
    let page_dir = path.parent().unwrap_or(dir).to_path_buf();
    std::fs::create_dir_all(&page_dir)?;
    let mut html = format!(
        "<!doctype html>\n<html><head><title>{page} on {name}</title></head>\n<body>\n<h1>{page}</h1>\n",
        name = web.name
    );
    for i in 1..=web.images {
        let file = format!("pic{i}.jpg");
        std::fs::write(page_dir.join(&file), jpeg(i))?;
        let _ = writeln!(html, "<img src=\"{file}\" alt=\"picture {i}\" width=\"160\">");
    }
    if let (Some(image), Some(url)) = (&web.cdn_image, cdn_url) {
        // The origin keeps the file; the page points browsers at the CDN's name for it.
        std::fs::write(dir.join(image), jpeg(42))?;
        let _ = writeln!(html, "<img src=\"{url}/{image}\" alt=\"served by the CDN\">");
    }
    html.push_str("</body></html>\n");
    std::fs::write(path, html)
}

/// A real JPEG: a colour gradient whose hue depends on `seed`.
pub fn jpeg(seed: u32) -> Vec<u8> {
    let (w, h) = IMAGE_SIZE;
    let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h as u32 {
        for x in 0..w as u32 {
            rgb.push(((x * 255 / w as u32) + seed * 25) as u8);
            rgb.push(((y * 255 / h as u32) + seed * 60) as u8);
            rgb.push(((x + y) * 2 + seed * 90) as u8);
        }
    }
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, 80);
    encoder.encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb).expect("encoding into memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_textbook_page_references_ten_real_jpegs() {
        let root = std::env::temp_dir().join(format!("appnet-sites-{}", std::process::id()));
        let web = WebSpec {
            name: "www.someschool.edu".into(),
            addr: "127.0.10.14".parse().unwrap(),
            page: Some("someDepartment/home.index".into()),
            images: 10,
            cdn_image: None,
        };
        let dir = write_site(&web, &root, None).unwrap();
        let page = std::fs::read_to_string(dir.join("someDepartment/home.index")).unwrap();
        assert_eq!(page.matches("<img ").count(), 10);
        let pic = std::fs::read(dir.join("someDepartment/pic10.jpg")).unwrap();
        assert_eq!(&pic[..3], &[0xFF, 0xD8, 0xFF], "JPEG start of image");
        assert_eq!(&pic[pic.len() - 2..], &[0xFF, 0xD9], "JPEG end of image");
        assert!(pic.len() > 4_000, "{} bytes", pic.len());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
