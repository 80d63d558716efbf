"""Output formats: the last word on how the result is encoded."""
from .base import Param, register

_QUALITY = Param("quality", int, 90, min=1, max=100, help="encoder quality (1-100)")


@register("jpeg", kind="format", help="encode the result as JPEG", params=[
    _QUALITY,
    Param("subsampling", str, "444", choices=("444", "422", "420"),
          help="chroma subsampling: 444 keeps full colour detail; 420 (what most image servers send) "
               "is about a third smaller and faster to encode")])
def jpeg(image, ctx, *, quality, subsampling):
    ctx.output_format, ctx.quality, ctx.jpeg_subsampling = "jpeg", quality, subsampling


@register("png", kind="format", help="encode the result as PNG (lossless)", params=[
    Param("compression", int, 3, min=0, max=9, help="zlib compression level (0-9)")])
def png(image, ctx, *, compression):
    ctx.output_format, ctx.quality = "png", compression


@register("webp", kind="format", help="encode the result as WebP", params=[_QUALITY])
def webp(image, ctx, *, quality):
    ctx.output_format, ctx.quality = "webp", quality


@register("json", kind="format", help="return only the metadata (detections, sizes, timings) as JSON, no image")
def json_only(image, ctx):
    ctx.output_format = "json"
