"""The clinician app: Gradio Blocks over the service's HTTP API.

`build_ui(api_url)` returns Blocks that are ready both to `.launch()` alone (`python -m ui`) and to
be mounted in the BentoML service at `/ui` with `bentoml.gradio.mount_gradio_app`. The latter
does not set a theme or build the config the way `gr.mount_gradio_app` does, and Gradio 6 answers
`/ui/` with a 500 without them, so `prepare_for_mount` does that part here.

With `api_url=None` the app calls `BALANCEDBIO_API_URL`, else (mounted in the service) the
address of the socket the request arrived on, as the server reports it (ASGI `scope["server"]`);
never the request's Host header, which the caller chooses (a typed key would go to their host).

Every function needs the API key, checked by the service (a cached `GET /v1/models` per session
and key): without a valid one a function answers an error and does nothing else. A session is the
server-issued cookie of ui/sessions.py; an accepted key binds it, which is what lets it upload (the
upload route is Gradio's and sees no key), and a function reads only files its own session uploaded
(from Gradio's upload folder; old ones are deleted). Serve the app behind `UiSessionGate`.
"""

from __future__ import annotations

import logging
import os
import time

import gradio as gr

from ui import patients
from ui.client import ApiError, ServiceClient
from ui.render import HISTORY_COLUMNS, banner_html, findings_html, history_rows
from ui.sessions import KeyChecks, UiSessions

log = logging.getLogger(__name__)

CORRECT_CHOICES = ["not graded", "correct", "incorrect"]
CSS = ".bb-card summary{cursor:pointer} #bb-status{min-height:1.5em}"


def prepare_for_mount(blocks: gr.Blocks, theme: str = "default") -> gr.Blocks:
    """Set what `gr.mount_gradio_app`/`launch` would set, so a bare mount serves `/ui/` (Gradio 6)."""
    from gradio import utils

    blocks.theme = utils.get_theme(theme)
    blocks.css, blocks.js, blocks.head = CSS, "", ""
    blocks.head_paths, blocks.css_paths = [], []
    blocks._set_html_css_theme_variables()
    blocks.ssr_mode = False
    harden(blocks)
    blocks.transpile_to_js()
    blocks.config = blocks.get_config_file()
    # Gradio checks that a file named in a request was uploaded (is in its upload folder) only once
    # the Blocks "has launched"; a bare mount never launches, so a FileData naming any server path
    # was copied into the cache and handed to the function. Mounted is launched, as far as that goes.
    blocks.has_launched = True
    return blocks


def harden(blocks: gr.Blocks) -> gr.Blocks:
    """Settings `bentoml.gradio.mount_gradio_app` overrides (show_error=True, max_file_size=None):
    call again after mounting. Gradio's own errors (e.g. "Cannot move <server path> ...") then stay
    in the server log; the handlers answer with their own messages, which never name a server path."""
    blocks.show_error = False
    blocks.max_file_size = patients.MAX_UPLOAD_BYTES  # Gradio's upload route refuses larger files (bytes)
    return blocks


def _base_url(configured: str | None, request: gr.Request | None) -> str:
    if configured:
        return configured
    if os.environ.get("BALANCEDBIO_API_URL"):
        return os.environ["BALANCEDBIO_API_URL"]
    # Mounted in the service: the local address the server accepted this request on. Unlike the
    # Host header this is not chosen by the caller.
    inner = getattr(request, "request", None) if request is not None else None
    server = (getattr(inner, "scope", None) or {}).get("server") if inner is not None else None
    if server and server[1]:
        host = server[0] if server[0] not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{server[1]}"
    raise ApiError(None, "configuration", "no API URL: start with --api-url or set BALANCEDBIO_API_URL")


def _status(message: str, ok: bool = True) -> str:
    # Words, not emoji: headless and kiosk browsers often lack an emoji font.
    return message if ok else f"**Problem:** {message}"


def build_ui(api_url: str | None = None, sessions: UiSessions | None = None) -> gr.Blocks:
    """The clinician app as Gradio Blocks; `api_url` is the service's base URL (see the module docstring).
    `sessions` is the state the functions share with the `UiSessionGate` in front of the app (give both
    the same object); without a gate no session is bound and no upload can be read (fail closed)."""
    samples = patients.sample_names()

    sessions = sessions or UiSessions()
    checks = KeyChecks()

    def client(api_key: str, request: gr.Request | None) -> ServiceClient:
        return ServiceClient(_base_url(api_url, request), api_key or "")

    def check_key(c: ServiceClient, sid: str | None) -> list[dict]:
        """The service's verdict on the key, which binds the session (or unbinds it: 401/403)."""
        try:
            models = c.models()
        except ApiError as exc:
            if exc.status in (401, 403):
                sessions.unbind(sid)
            raise
        sessions.bind(sid)
        if sid:
            checks.remember(sid, c.api_key)
        return models

    def authorised(api_key: str, request: gr.Request | None) -> ServiceClient:
        """A client for a key the service accepts (ApiError otherwise): checked before any work.
        Without a session (no gate in front) the key is asked of the service every time."""
        c = client(api_key, request)
        sid = sessions.of(request)
        if not (sid and checks.valid(sid, c.api_key)):
            check_key(c, sid)
        return c

    # --- handlers --------------------------------------------------------------------------------
    def connect(api_key: str, request: gr.Request):
        try:
            models = check_key(client(api_key, request), sessions.of(request))
        except ApiError as exc:
            return '<div id="bb-banner">Not connected.</div>', _status(str(exc), ok=False)
        return banner_html(models), _status(f"Connected; {len(models)} model(s) served.")

    def loaded(patient: dict, where: str):
        try:
            summary = patients.summarize(patient)
        except patients.PatientLoadError as exc:
            return None, "*No patient loaded.*", _status(str(exc), ok=False)
        return patient, summary, _status(f"Patient loaded from {where}.")

    def failed(exc: Exception):
        return None, "*No patient loaded.*", _status(str(exc), ok=False)

    def load_sample(name: str, api_key: str, request: gr.Request):
        try:
            authorised(api_key, request)
            return loaded(patients.load_sample(name), f"sample {name!r}")
        except (patients.PatientLoadError, ApiError) as exc:
            return failed(exc)

    def load_upload(path, api_key: str, request: gr.Request):
        try:
            authorised(api_key, request)
            root = gr_upload_folder()
            patients.clean_uploads(root)
            path = getattr(path, "path", path)  # a FileData when called through the API
            if isinstance(path, dict):
                path = path.get("path")
            # Gradio names an upload by a hash of its content, so a path says nothing of who sent it:
            # only a file the gate recorded for this very session is read.
            if path and not sessions.owns(sessions.of(request), path):
                raise patients.PatientLoadError("only a file uploaded in this session can be loaded; upload the "
                                                "Bundle again")
            return loaded(patients.load_upload(path, root), "the uploaded file")
        except (patients.PatientLoadError, ApiError) as exc:
            return failed(exc)

    def load_fhir(base: str, patient_id: str, token: str, api_key: str, request: gr.Request):
        try:
            c = authorised(api_key, request)
            if not (base or "").strip() or not (patient_id or "").strip():
                raise patients.PatientLoadError("give the FHIR base URL and a patient id")
            bundle = c.fhir_patient(base.strip(), patient_id.strip(), (token or "").strip() or None)
            return loaded(bundle, "the FHIR server")
        except (patients.PatientLoadError, ApiError) as exc:
            return failed(exc)

    def ask(question: str, api_key: str, patient: dict | None, history: list[dict], request: gr.Request):
        # outputs: answer, findings, consult, history state, history table, edited answer, status
        if not (question or "").strip():
            yield gr.update(), gr.update(), None, history, history_rows(history), "", _status("Type a question first.", False)
            return
        try:
            service = authorised(api_key, request)
        except ApiError as exc:
            yield gr.update(), gr.update(), None, history, history_rows(history), "", _status(str(exc), ok=False)
            return
        answer = ""
        pending = '<div id="bb-findings"><i>Safety checks run when the answer is complete…</i></div>'
        try:
            for event in service.consult_stream(question.strip(), patient):
                if event.get("event") == "token":
                    answer += str(event.get("text", ""))
                    yield answer, pending, None, history, history_rows(history), "", _status("Answering…")
                elif event.get("event") == "done":
                    consult = event.get("consult") or {}
                    entry = {"time": time.strftime("%H:%M:%S"), "question": question.strip(),
                             "model": str(consult.get("model", "")), "findings": len(consult.get("findings") or []),
                             "consult_id": consult.get("consult_id"), "feedback": None}
                    history = [*history, entry]
                    final = str(consult.get("answer", answer))
                    yield (final, findings_html(consult.get("findings") or [], bool(consult.get("escalated"))),
                           consult, history, history_rows(history), final,
                           _status(f"Answered (consult {consult.get('consult_id')}). Accept, override or edit below."))
                    return
                elif event.get("event") == "error":
                    raise ApiError(None, "stream", str(event.get("message") or event))
            raise ApiError(None, "protocol", "the answer stream ended without a final 'done' event")
        except ApiError as exc:
            yield answer, gr.update(), None, history, history_rows(history), "", _status(str(exc), ok=False)

    def send_feedback(outcome: str, api_key: str, consult: dict | None, history: list[dict], reason: str,
                      edited: str, correct: str, request: gr.Request):
        if not consult or not consult.get("consult_id"):
            return history, history_rows(history), _status("Ask a question first; feedback refers to an answer.", False)
        verdict = {"correct": True, "incorrect": False}.get(correct)
        try:
            result = authorised(api_key, request).feedback(consult["consult_id"], outcome, reason=reason or None,
                                                       edited_answer=edited if outcome == "edit" else None,
                                                       correct=verdict)
        except ApiError as exc:
            return history, history_rows(history), _status(str(exc), ok=False)
        label = outcome + (f": {reason.strip()}" if outcome == "override" else "")
        history = [{**h, "feedback": label} if h.get("consult_id") == consult["consult_id"] else h for h in history]
        return history, history_rows(history), _status(f"Feedback '{outcome}' saved (id {result.get('feedback_id')}).")

    def feedback_for(outcome: str):
        # A named function per button: Gradio injects gr.Request by reading type hints, which a
        # lambda or functools.partial would hide.
        def handler(api_key: str, consult: dict | None, history: list[dict], reason: str, edited: str,
                    correct: str, request: gr.Request):
            return send_feedback(outcome, api_key, consult, history, reason, edited, correct, request)

        return handler

    # --- layout ----------------------------------------------------------------------------------
    with gr.Blocks(title="BalancedBio clinician") as demo:
        patient_state = gr.State(None)
        consult_state = gr.State(None)
        history_state = gr.State([])

        gr.Markdown("## BalancedBio clinical assistant\nDecision support only: the clinician decides.")
        banner = gr.HTML('<div id="bb-banner">Not connected: enter the API key.</div>', elem_id="banner")
        with gr.Row():
            api_key = gr.Textbox(label="API key", type="password", elem_id="api-key", scale=4)
            connect_btn = gr.Button("Connect", elem_id="connect", scale=1)
        status = gr.Markdown("", elem_id="bb-status")

        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown("### Patient")
                with gr.Tab("Sample patient"):
                    if samples:
                        sample = gr.Radio(samples, label="Bundled sample patients", elem_id="sample-patient")
                        sample_btn = gr.Button("Load sample", elem_id="load-sample")
                    else:
                        gr.Markdown("No sample patients are installed (clinical.samples).")
                with gr.Tab("Upload Bundle"):
                    upload = gr.File(label="FHIR R4 Bundle or resource (JSON)", file_types=[".json"],
                                     type="filepath", elem_id="upload")
                    # Gradio shows a refused upload as a bare "Error": say beforehand what it needs.
                    gr.Markdown("Connect with your API key first: uploads are accepted only once the service "
                                "has checked it in this browser session.", elem_id="upload-hint")
                with gr.Tab("FHIR server"):
                    fhir_base = gr.Textbox(label="FHIR base URL (one the service allows)",
                                           placeholder="https://fhir.example.org/r4")
                    fhir_id = gr.Textbox(label="Patient id")
                    fhir_token = gr.Textbox(label="Bearer token (optional)", type="password")
                    fhir_btn = gr.Button("Fetch patient")
                summary = gr.Markdown("*No patient loaded.*", elem_id="patient-summary")
            with gr.Column(scale=2):
                gr.Markdown("### Question")
                question = gr.Textbox(label="Clinical question", lines=3, elem_id="question")
                ask_btn = gr.Button("Ask", variant="primary", elem_id="ask")
                answer = gr.Markdown("", elem_id="answer", label="Answer")
                findings = gr.HTML('<div id="bb-findings"></div>', elem_id="findings")
                with gr.Accordion("Feedback on this answer", open=True):
                    correct = gr.Radio(CORRECT_CHOICES, value="not graded", label="Was the answer correct?",
                                       elem_id="correct")
                    accept_btn = gr.Button("Accept", variant="primary", elem_id="accept")
                    reason = gr.Textbox(label="Override reason", elem_id="override-reason")
                    override_btn = gr.Button("Override", elem_id="override")
                    edited = gr.Textbox(label="Edited answer", lines=4, elem_id="edited-answer")
                    edit_btn = gr.Button("Save edit", elem_id="save-edit")
        gr.Markdown("### This session")
        history_table = gr.Dataframe(headers=HISTORY_COLUMNS, value=[], interactive=False, elem_id="history")

        # --- wiring -------------------------------------------------------------------------------
        connect_btn.click(connect, [api_key], [banner, status])
        api_key.submit(connect, [api_key], [banner, status])
        loaded_out = [patient_state, summary, status]
        if samples:
            sample_btn.click(load_sample, [sample, api_key], loaded_out)
        upload.upload(load_upload, [upload, api_key], loaded_out)
        fhir_btn.click(load_fhir, [fhir_base, fhir_id, fhir_token, api_key], loaded_out)
        ask_out = [answer, findings, consult_state, history_state, history_table, edited, status]
        ask_btn.click(ask, [question, api_key, patient_state, history_state], ask_out)
        feedback_in = [api_key, consult_state, history_state, reason, edited, correct]
        feedback_out = [history_state, history_table, status]
        for button, outcome in ((accept_btn, "accept"), (override_btn, "override"), (edit_btn, "edit")):
            button.click(feedback_for(outcome), feedback_in, feedback_out)

    return prepare_for_mount(demo)


def gr_upload_folder() -> str:
    """Gradio's upload folder (GRADIO_TEMP_DIR or <tmp>/gradio): the only place uploads are read from."""
    from gradio.utils import get_upload_folder

    return get_upload_folder()
