"""Atheris: KV pairs and labels (``key=value`` lines of any bytes) decode without raising.

    python fuzz/provider_decoders.py -atheris_runs=500000
"""

from _entry import load_properties, run

properties = load_properties("test_provider_decoders_fuzz")

if __name__ == "__main__":
    run(properties.check_one_input,
        [b"tcp/routers/r/rule=HostSNI(\xff`*`)\ntcp/routers/r/service=\x18",
         b"tcp/routers/r/entrypoints/" + b"9" * 5000 + b"=ep"])
