#!/usr/bin/env python3
"""Python peer for `telematics decode --count`: what a careful Python consumer
built on the official protobuf runtime (upb) and python-zstandard achieves.

  python_decode.py FILE.tmcap [--dict-dir DIR]

Prints {"records":N,"valid":V,"rejected":R,"seconds":S,"records_per_second":X}.
`seconds` covers reading, decoding and touching the records, not start-up
(protoc generation, imports, dictionary loading), so the peer is not
penalised for one-off costs.

It is meant to be a fair, fast opponent: decompressors and structs are
reused, the hot loop binds everything to locals, and value checks use C-level builtins (max, min,
accumulate) where a Python developer would. Validation is the envelope
rules, what the runtime itself enforces (varints, lengths, UTF-8) and the
schema's value ranges; it skips the byte-level wire-type walk of tmgen.py,
which would only make Python slower.
"""
import argparse
import importlib
import json
import os
import struct
import sys
import tempfile
import time
from itertools import accumulate

import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_BODY = 1 << 20
CHUNK = 16 << 20
VIN_CHARS = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def find_proto():
    # the shared spec beside the project first, then the package's own copy
    for p in (os.path.join(HERE, "..", "..", "..", "shared", "spec", "telematics.proto"),
              os.path.join(HERE, "..", "..", "Tests", "Fixtures", "spec", "telematics.proto")):
        if os.path.exists(p):
            return os.path.abspath(p)
    sys.exit("telematics.proto not found")


def load_pb2(proto):
    # generated at start-up, as tmgen.py does, so no generated code is checked in
    out = tempfile.mkdtemp(prefix="tmpb2-")
    from grpc_tools import protoc
    if protoc.main(["protoc", f"-I{os.path.dirname(proto)}", f"--python_out={out}", proto]) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    return importlib.import_module("telematics_pb2")


def load_decompressors(d):
    """One reused ZstdDecompressor per dictionary id; key 0 = no dictionary."""
    out = {0: zstandard.ZstdDecompressor()}
    if d and os.path.isdir(d):
        for fn in sorted(os.listdir(d)):
            if fn.endswith(".dict"):
                with open(os.path.join(d, fn), "rb") as f:
                    zd = zstandard.ZstdCompressionDict(f.read())
                out[zd.dict_id()] = zstandard.ZstdDecompressor(dict_data=zd)
    return out


class Bad(Exception):
    """A record the schema rules reject (range checks)."""


def check_pos(p):
    lat, lon = p.lat_e7, p.lon_e7
    if not (-900000000 <= lat <= 900000000 and -1800000000 <= lon <= 1800000000):
        raise Bad
    return lat + lon


# Each toucher reads every field of its message, as a consumer building its
# own records would, checks the schema ranges and returns a checksum part.

def touch_teleservice(m, t_ms):
    s = m.trigger + m.mileage_km + m.battery_12v_mv + len(m.service_partner_id) + m.in_workshop
    for it in m.service_items:
        s += it.type + it.status + it.due_in_days + it.due_in_km
    for cc in m.check_controls:
        s += cc.code + cc.severity
    if m.HasField("position"):
        s += check_pos(m.position)
    return s


def touch_hv(m, t_ms):
    s = (len(m.event_id) + m.thermal + m.powertrain + m.plugged_in + m.doors_open + m.trunk_open
         + m.engine_running + m.ignition_on + m.vehicle_state + m.max_cell_temp_dc + m.soc_permille)
    if m.soc_permille > 1000:
        raise Bad
    if m.HasField("position"):
        s += check_pos(m.position)
    return s


def touch_rtti(m, t_ms):
    # one slice per column: upb element access is slow, C builtins on lists are not
    dt, dlat, dlon, speed, heading = m.dt_ms[:], m.dlat_e7[:], m.dlon_e7[:], m.speed_dkmh[:], m.heading_deg[:]
    n = len(dt)
    if not (len(dlat) == len(dlon) == len(speed) == len(heading) == n):
        raise Bad
    s = 0
    if n:
        # absolute points: running sums of the delta columns, then range checks
        lats = list(accumulate(dlat))
        lons = list(accumulate(dlon))
        if (min(lats) < -900000000 or max(lats) > 900000000
                or min(lons) < -1800000000 or max(lons) > 1800000000 or max(heading) > 359):
            raise Bad
        s = n * t_ms + sum(dt) + sum(lats) + sum(lons) + sum(speed) + sum(heading)
    for h in m.hazards:
        if h.point_index >= n:
            raise Bad
        s += h.type + h.point_index
    return s


def touch_charge(m, t_ms):
    s = (len(m.session_id) + m.started_at_ms + m.ended_at_ms + m.soc_start_permille
         + m.soc_end_permille + m.energy_wh + m.max_power_w + m.current + m.site + m.end_reason)
    if m.soc_start_permille > 1000 or m.soc_end_permille > 1000:
        raise Bad
    if m.HasField("position"):
        s += check_pos(m.position)
    return s


def touch_consent(m, t_ms):
    return (m.teleservices + m.smart_maintenance + m.charging_history + m.charging_location
            + m.rtti + m.account_deleted)


def run(path, pb, dctxs):
    from google.protobuf.message import DecodeError
    # index = kind byte. A fresh message per record: with upb, FromString measured
    # faster than reusing one object (ParseFromString must clear it first).
    parse = [None, pb.TeleserviceCall.FromString, pb.HvWarnCall.FromString, pb.RttiProbe.FromString,
             pb.ChargeSession.FromString, pb.ConsentState.FromString]
    touch = [None, touch_teleservice, touch_hv, touch_rtti, touch_charge, touch_consent]
    head = struct.Struct("<2sBBB3sQq17s3sI").unpack_from  # the 48-byte envelope header
    u32 = struct.Struct("<I").unpack_from
    frame_params = zstandard.get_frame_parameters
    unknown = zstandard.CONTENTSIZE_UNKNOWN
    errors = (zstandard.ZstdError, DecodeError, Bad, KeyError)
    records = valid = checksum = 0
    buf, pos = b"", 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            buf = buf[pos:] + chunk  # only the partial record at the end is copied
            pos, end = 0, len(buf)
            while pos + 4 <= end:
                (n,) = u32(buf, pos)
                start, stop = pos + 4, pos + 4 + n
                if stop > end:
                    break  # record continues in the next chunk
                pos = stop
                records += 1
                if n < 48:
                    continue  # truncated
                magic, version, kind, flags, res1, seq, t_ms, vin, res2, blen = head(buf, start)
                if (magic != b"TM" or version != 1 or not 1 <= kind <= 5 or flags & 0xFE
                        or res1 != b"\0\0\0" or res2 != b"\0\0\0" or n != 48 + blen
                        or vin.translate(None, VIN_CHARS)):
                    continue
                body = buf[start + 48:stop]
                try:
                    if flags & 1:
                        p = frame_params(body)
                        if p.content_size != unknown and p.content_size > MAX_BODY:
                            raise Bad
                        # unknown dictionary id -> KeyError -> rejected
                        body = dctxs[p.dict_id].decompress(body, max_output_size=MAX_BODY)
                    m = parse[kind](body)
                    checksum += seq + t_ms + touch[kind](m, t_ms)
                    valid += 1
                except errors:
                    pass
    if pos < len(buf):
        records += 1  # a cut-off record at the end of the file
    return records, valid, checksum


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--dict-dir")
    ap.add_argument("--proto", help="telematics.proto (default: ../shared/spec, else Tests/Fixtures/spec)")
    a = ap.parse_args()
    pb = load_pb2(os.path.abspath(a.proto) if a.proto else find_proto())
    dctxs = load_decompressors(a.dict_dir)
    t0 = time.perf_counter()
    records, valid, checksum = run(a.file, pb, dctxs)
    secs = time.perf_counter() - t0
    print(json.dumps({"records": records, "valid": valid, "rejected": records - valid,
                      "seconds": round(secs, 6), "records_per_second": round(records / secs, 1),
                      "checksum": checksum}, separators=(",", ":")))


if __name__ == "__main__":
    main()
