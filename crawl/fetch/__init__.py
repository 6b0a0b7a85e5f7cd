"""The fetch stage: Links -> Pages, politely (per-host pacing that holds across workers, robots.txt) and safely
(address checks on every hop, bounded bodies and time). transform.FetchPages is the Beam stage; fetcher.fetch_host
is the plain function it runs per host; warc.py captures responses so a rerun resumes without refetching."""
