from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access"

    def ready(self):
        # Sign-in auditing and throttling hook into Django's and django-axes' signals, their
        # extension points; the work is done by the services in access/signin.py.
        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from access import signin

        user_login_failed.connect(signin.on_user_login_failed, dispatch_uid="access.signin.failed")
        user_locked_out.connect(signin.on_user_locked_out, dispatch_uid="access.signin.locked_out")
        user_logged_in.connect(signin.on_user_logged_in, dispatch_uid="access.signin.logged_in")
