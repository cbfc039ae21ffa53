"""Reads a printed emergency card the way a person would: the PDF's page
size and text (pypdf), and the QR code on the page rasterized at 300 dpi
(poppler's pdftoppm) and scanned (zxing-cpp); a PNG QR code too.

Usage: read_wallet_card.py CARD.pdf [QR.png]
Prints JSON: {"width_mm", "height_mm", "text", "card_qr", "png_qr"}.
"""
import json
import subprocess
import sys
import tempfile

import pypdf
import zxingcpp
from PIL import Image


def scan(path):
    found = zxingcpp.read_barcodes(Image.open(path))
    return [r.text for r in found if r.format == zxingcpp.BarcodeFormat.QRCode]


def main():
    pdf_path = sys.argv[1]
    reader = pypdf.PdfReader(pdf_path)
    page = reader.pages[0]
    box = page.mediabox
    out = {
        "pages": len(reader.pages),
        "width_mm": round(float(box.width) * 25.4 / 72, 1),
        "height_mm": round(float(box.height) * 25.4 / 72, 1),
        "text": page.extract_text(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["pdftoppm", "-r", "300", "-png", "-singlefile", pdf_path, f"{tmp}/card"],
            check=True,
        )
        out["card_qr"] = scan(f"{tmp}/card.png")
    if len(sys.argv) > 2:
        out["png_qr"] = scan(sys.argv[2])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
