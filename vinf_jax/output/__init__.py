"""The output stage: latents become files.

``export`` decodes chunks of frames on the mesh and streams them to ``video_sink`` (a writer
thread feeding ffmpeg); ``video_io`` names, writes and publishes files atomically (never
overwriting); ``seams`` scores every clip boundary and ``contact_sheet`` draws the PNG overview;
``jsonfile`` is the one JSON writer. Importing this package imports no jax (``export`` does).
"""
