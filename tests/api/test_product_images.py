"""Product pictures: upload, the re-encoding that makes them safe, every refusal, the cached
reads that show them, the files served under /media/, and pruning the files no row names."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.factories import ProductFactory
from tests.helpers import assert_problem, invoke_cli

PAYLOAD = b"<script>alert('hidden after the image data')</script>"


def picture(kind: str = "JPEG", size=(640, 480), color=(200, 40, 40), **save) -> bytes:
    mode = "RGBA" if kind != "JPEG" and save.pop("alpha", False) else "RGB"
    buffer = io.BytesIO()
    fill = (*color, 128) if mode == "RGBA" else color
    Image.new(mode, size, fill).save(buffer, kind, **save)
    return buffer.getvalue()


def jpeg_with_metadata(size=(3000, 1000), orientation: int | None = None) -> bytes:
    """A JPEG carrying GPS EXIF, an ICC profile, a comment, and a script after its end marker."""
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N", 2: (59.0, 20.0, 0.0)}  # GPS
    if orientation:
        exif[0x0112] = orientation
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(
        buffer, "JPEG", exif=exif, icc_profile=icc, comment=b"private"
    )
    return buffer.getvalue() + PAYLOAD


def upload(client, product_id: int, data: bytes, headers, name="photo.jpg", content_type=None):
    return client.post(
        f"/api/products/{product_id}/images/",
        data={"file": (io.BytesIO(data), name, content_type or "application/octet-stream")},
        headers=headers,
        content_type="multipart/form-data",
    )


def stored(app, url: str) -> bytes:
    return (Path(app.config["MEDIA_ROOT"]) / url.removeprefix(app.config["MEDIA_URL"])).read_bytes()


def test_upload_strips_metadata_bounds_the_size_and_shows_everywhere(app, client, admin_headers):
    product = ProductFactory()
    before = client.get(f"/api/products/{product.id}/")
    assert before.get_json()["images"] == []  # cached now: the upload must purge it
    listed = client.get("/api/products/", query_string={"page_size": 100})
    assert [p["images"] for p in listed.get_json() if p["id"] == product.id] == [[]]

    created = upload(client, product.id, jpeg_with_metadata(), admin_headers)
    assert created.status_code == 201, created.get_json()
    image = created.get_json()
    assert set(image) == {
        "id",
        "product_id",
        "url",
        "thumbnail_url",
        "width",
        "height",
        "thumbnail_width",
        "thumbnail_height",
        "position",
    }
    assert image["product_id"] == product.id and image["position"] == 0
    assert (image["width"], image["height"]) == (2048, 683)  # bounded to MEDIA_MAX_EDGE
    assert (image["thumbnail_width"], image["thumbnail_height"]) == (400, 133)
    assert image["url"].startswith("/media/") and image["url"].endswith(".jpg")

    data = stored(app, image["url"])
    assert PAYLOAD not in data and b"SecretCam" not in data and b"private" not in data
    reread = Image.open(io.BytesIO(data))
    assert reread.format == "JPEG" and reread.size == (2048, 683)
    assert not reread.getexif() and "icc_profile" not in reread.info and "comment" not in reread.info
    assert Image.open(io.BytesIO(stored(app, image["thumbnail_url"]))).size == (400, 133)

    # The next read on the cached paths shows it (the detail and the list were purged).
    detail = client.get(f"/api/products/{product.id}/", headers={"If-None-Match": before.headers["ETag"]})
    assert detail.status_code == 200
    assert detail.get_json()["images"] == [{k: v for k, v in image.items() if k != "product_id"}]
    listed = client.get("/api/products/", query_string={"page_size": 100})
    assert [p["images"] for p in listed.get_json() if p["id"] == product.id][0][0]["id"] == image["id"]

    second = upload(client, product.id, picture("PNG", alpha=True), admin_headers, name="b.png")
    assert second.status_code == 201 and second.get_json()["position"] == 1
    assert second.get_json()["url"].endswith(".png")
    assert Image.open(io.BytesIO(stored(app, second.get_json()["url"]))).mode == "RGBA"

    assert (
        client.delete(f"/api/products/{product.id}/images/{image['id']}/", headers=admin_headers).status_code
        == 204
    )
    left = client.get(f"/api/products/{product.id}/").get_json()["images"]
    assert [i["id"] for i in left] == [second.get_json()["id"]]
    gone = client.delete(f"/api/products/{product.id}/images/{image['id']}/", headers=admin_headers)
    assert_problem(gone, 404)


def test_media_files_are_served_for_a_long_time_under_their_hash(client, admin_headers):
    product = ProductFactory()
    image = upload(client, product.id, picture("WEBP"), admin_headers, name="x.webp").get_json()
    assert image["url"].endswith(".webp")
    served = client.get(image["url"])
    assert served.status_code == 200 and served.mimetype == "image/webp"
    assert served.cache_control.public and served.cache_control.max_age >= 86400
    assert served.cache_control.immutable
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    # The same picture again: the same content-hashed files, one copy on disk.
    again = upload(client, product.id, picture("WEBP"), admin_headers, name="y.webp").get_json()
    assert again["url"] == image["url"] and again["id"] != image["id"]
    assert_problem(client.get("/media/ab/nothing-here.jpg"), 404)


def test_media_serves_nothing_outside_its_folder(app, client):
    root = Path(app.config["MEDIA_ROOT"])
    root.mkdir(parents=True, exist_ok=True)
    secret = root.parent / f"{root.name}-secret.txt"
    secret.write_text("not a picture")
    try:
        assert client.get(f"/media/../{root.name}-secret.txt").status_code == 404
        for path in (f"/media/%2e%2e/{secret.name}", f"/media/..%2f{secret.name}"):
            answer = client.get(path)
            assert answer.status_code == 404 and b"not a picture" not in answer.data, path
    finally:
        secret.unlink()


def test_a_camera_multi_picture_jpeg_is_taken_as_a_jpeg(client, admin_headers):
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (300, 200), "red"), Image.new("RGB", (300, 200), "blue")
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    created = upload(client, ProductFactory().id, buffer.getvalue(), admin_headers)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["url"].endswith(".jpg")


def test_damaged_exif_does_not_refuse_the_photo(app, client, admin_headers):
    # An EXIF block with a tag that points past its end: Pillow cannot write it back after
    # turning the picture (struct.error), which was a 500.
    exif = bytes.fromhex(
        "4578696600004d4d002a0000000800d4010900020000000443616d0001120003000000010006000000000000"
    )
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buffer, "JPEG", exif=exif)
    created = upload(client, ProductFactory().id, buffer.getvalue(), admin_headers)
    assert created.status_code == 201, created.get_json()
    stored_picture = Image.open(io.BytesIO(stored(app, created.get_json()["url"])))
    # Its orientation (6) is still readable, and applied; rewriting the rest is what fails.
    assert stored_picture.size == (48, 64) and not stored_picture.getexif()


def test_the_picture_is_turned_upright_by_its_exif_orientation(client, admin_headers):
    product = ProductFactory()
    # Orientation 6: the camera was turned; shown rotated 90 degrees, so 300x100 becomes 100x300.
    created = upload(client, product.id, jpeg_with_metadata(size=(300, 100), orientation=6), admin_headers)
    assert created.status_code == 201
    assert (created.get_json()["width"], created.get_json()["height"]) == (100, 300)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"just some text, not a picture\n", "notes.png"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "logo.svg"),
        (b"<!doctype html><html><body><script>alert(1)</script></body></html>", "page.jpg"),
        (picture("GIF"), "anim.gif"),
        (picture("BMP"), "old.bmp"),
    ],
    ids=["text-named-png", "svg", "html", "gif", "bmp"],
)
def test_what_is_not_a_jpeg_png_or_webp_is_415(client, admin_headers, data, name):
    product = ProductFactory()
    refused = upload(client, product.id, data, admin_headers, name=name, content_type="image/png")
    body = assert_problem(refused, 415)
    assert "JPEG, PNG or WebP" in body["detail"]
    assert client.get(f"/api/products/{product.id}/").get_json()["images"] == []


def test_a_damaged_or_empty_picture_is_422(client, admin_headers):
    product = ProductFactory()
    whole = picture("JPEG", size=(800, 600))
    assert_problem(upload(client, product.id, whole[: len(whole) // 3], admin_headers), 422)
    empty = assert_problem(upload(client, product.id, b"", admin_headers), 422)
    assert empty["errors"] == {"file": ["The file is empty."]}
    missing = client.post(
        f"/api/products/{product.id}/images/",
        data={"other": "x"},
        headers=admin_headers,
        content_type="multipart/form-data",
    )
    assert "file" in assert_problem(missing, 422)["errors"]


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\nabc',
            422,
        ),
        ("multipart/form-data; boundary=xyz", b"garbage", 422),
        ("multipart/form-data; boundary=xyz", b"", 422),
        ("multipart/form-data", b"--xyz\r\n", 400),
    ],
    ids=["unterminated", "no-parts", "empty", "no-boundary"],
)
def test_a_malformed_multipart_body_is_a_clear_error(client, admin_headers, content_type, body, status):
    product = ProductFactory()
    answer = client.post(
        f"/api/products/{product.id}/images/",
        data=body,
        headers={**admin_headers, "Content-Type": content_type},
    )
    problem = assert_problem(answer, status)
    if status == 422:  # parts werkzeug could not read are no file
        assert "file" in problem["errors"]


def test_a_pixel_bomb_is_refused_before_it_is_decoded(client, admin_headers):
    # 8000 x 6000 = 48 MP of one colour: a PNG of a few kilobytes.
    buffer = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buffer, "PNG")
    assert len(buffer.getvalue()) < 100_000
    product = ProductFactory()
    refused = assert_problem(
        upload(client, product.id, buffer.getvalue(), admin_headers, name="bomb.png"), 422
    )
    assert "more than 40,000,000 pixels" in refused["detail"]


def test_a_body_over_media_max_bytes_is_413(app, client, admin_headers, monkeypatch):
    monkeypatch.setitem(app.config, "MEDIA_MAX_BYTES", 20_000)
    product = ProductFactory()
    big = picture("PNG", size=(200, 200)) + b"\0" * 30_000
    refused = assert_problem(upload(client, product.id, big, admin_headers, name="big.png"), 413)
    assert "20000 bytes" in refused["detail"]
    # Above MAX_CONTENT_LENGTH (1 MB) but within MEDIA_MAX_BYTES: the upload's own limit applies.
    monkeypatch.setitem(app.config, "MEDIA_MAX_BYTES", 10 * 1024 * 1024)
    large = jpeg_with_metadata(size=(3000, 2000)) + b"\0" * (1024 * 1024)
    assert upload(client, product.id, large, admin_headers).status_code == 201


def test_json_is_not_an_upload_and_only_admins_upload(client, admin_headers, user_headers):
    product = ProductFactory()
    as_json = client.post(f"/api/products/{product.id}/images/", json={"file": "x"}, headers=admin_headers)
    assert "multipart/form-data" in assert_problem(as_json, 415)["detail"]
    assert_problem(upload(client, product.id, picture(), {}), 401)
    assert_problem(upload(client, product.id, picture(), user_headers), 403)
    assert_problem(upload(client, 999_999, picture(), admin_headers), 404)
    assert_problem(client.delete(f"/api/products/{product.id}/images/1/", headers=user_headers), 403)


def test_an_image_of_another_product_is_404(client, admin_headers):
    first, second = ProductFactory(), ProductFactory()
    image = upload(client, first.id, picture(), admin_headers).get_json()
    assert_problem(
        client.delete(f"/api/products/{second.id}/images/{image['id']}/", headers=admin_headers), 404
    )
    assert len(client.get(f"/api/products/{first.id}/").get_json()["images"]) == 1


def test_a_product_holds_at_most_media_max_images(app, client, admin_headers, monkeypatch):
    monkeypatch.setitem(app.config, "MEDIA_MAX_IMAGES", 2)
    product = ProductFactory()
    for color in ((1, 2, 3), (4, 5, 6)):
        assert upload(client, product.id, picture(color=color), admin_headers).status_code == 201
    assert (
        "at most 2 pictures"
        in assert_problem(upload(client, product.id, picture(), admin_headers), 409)["detail"]
    )


def test_prune_removes_only_old_files_that_no_picture_names(app, client, admin_headers):
    product = ProductFactory()
    kept = upload(client, product.id, picture(color=(9, 9, 9)), admin_headers).get_json()
    dropped = upload(client, product.id, picture(color=(99, 9, 9)), admin_headers).get_json()
    client.delete(f"/api/products/{product.id}/images/{dropped['id']}/", headers=admin_headers)
    root = Path(app.config["MEDIA_ROOT"])

    spared = invoke_cli(app, "media", "prune")  # within the grace period: nothing goes
    assert spared.exit_code == 0 and (root / dropped["url"].removeprefix("/media/")).exists()

    result = invoke_cli(app, "media", "prune", "--older-than", "0")
    assert result.exit_code == 0, result.output
    assert not (root / dropped["url"].removeprefix("/media/")).exists()
    assert not (root / dropped["thumbnail_url"].removeprefix("/media/")).exists()
    assert (root / kept["url"].removeprefix("/media/")).exists()
    assert (root / kept["thumbnail_url"].removeprefix("/media/")).exists()
